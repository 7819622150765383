"""Tools: a function interface as validated JSON, then (optionally) its Python implementation.

The interface is normalised to one small JSON Schema shape, so that every record in the file
has the same field types (Arrow, and so `datasets`, refuse a column whose type changes).
The implementation must parse with `ast` and define a top-level function with the interface's
name whose parameters are exactly the interface's properties (optional ones with defaults).
"""

from __future__ import annotations

import ast
import json
import keyword
import re
from typing import Any

from engine.client.protocol import ChatReply, ChatRequest, Message
from engine.config import ToolTask
from engine.errors import ReplyError
from engine.ids import content_id
from engine.io.checkpoint import WorkItem
from engine.stages.base import Outcome, Stage
from engine.stages.synthesis.base import CreateStage, TaskRecord, add_usage, carry, common, load_template, text

TYPES = ("string", "number", "integer", "boolean", "array", "object", "null")
_SYNONYMS = {"str": "string", "text": "string", "int": "integer", "float": "number", "double": "number",
             "bool": "boolean", "list": "array", "dict": "object", "map": "object", "none": "null"}
_SNAKE = re.compile(r"[a-z_][a-z0-9_]*")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)

# closed objects keep llama.cpp's grammar small; array items and enums are then left out (items default to string)
_PROP = {"type": "object", "properties": {"type": {"type": "string"}, "description": {"type": "string"}},
         "required": ["type", "description"], "additionalProperties": False}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "properties": {"type": "object", "additionalProperties": _PROP},
                "required": {"type": "array", "items": {"type": "string"}}},
            "required": ["type", "properties", "required"],
            "additionalProperties": False},
        "returns": _PROP,
        "dependencies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "description", "parameters", "returns", "dependencies"],
    "additionalProperties": False,
}


class ToolRecord(TaskRecord, kw_only=True):
    """A function interface and, when asked for, its Python implementation."""

    name: str  # snake_case identifier
    description: str
    parameters: dict[str, Any]  # {"type": "object", "properties": {arg: {type, description, ...}}, "required": [...]}
    returns: dict[str, str]  # {"type", "description"}
    dependencies: list[str]
    implementation: str | None  # Python source; None when [synthesis.tool].implement is false


# ---- the interface ------------------------------------------------------------------------------


def _type(value: Any) -> str | None:
    if isinstance(value, list):  # ["string", "null"]
        value = next((v for v in value if isinstance(v, str) and v.lower() != "null"), None)
    if not isinstance(value, str):
        return None
    t = value.strip().lower()
    t = _SYNONYMS.get(t, t)
    return t if t in TYPES else None


def _identifier(name: Any) -> str | None:
    """A snake_case Python identifier from a name ("getWeather", "get weather" -> "get_weather")."""
    if not isinstance(name, str):
        return None
    n = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    n = re.sub(r"[\s\-]+", "_", n).lower()
    return n if _SNAKE.fullmatch(n) and not keyword.iskeyword(n) else None


def _property(name: str, spec: Any, raw: str) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"type": spec}
    t = _type(spec.get("type")) if isinstance(spec, dict) else None
    if t is None:
        raise ReplyError(f"parameter {name!r} has no JSON Schema type ({', '.join(TYPES)})", raw)
    assert isinstance(spec, dict)
    desc = spec.get("description")
    out: dict[str, Any] = {"type": t, "description": desc.strip() if isinstance(desc, str) else ""}
    enum = spec.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(e, str) for e in enum):
        out["enum"] = enum
    if t == "array":
        items = spec.get("items")
        out["items"] = {"type": (_type(items.get("type")) if isinstance(items, dict) else _type(items)) or "string"}
    return out


def _parameters(value: Any, raw: str) -> dict[str, Any]:
    required: Any = []
    if isinstance(value, list):  # [{"name", "type", "description", "required"}]
        props = {}
        for arg in value:
            if not isinstance(arg, dict) or not isinstance(arg.get("name"), str):
                raise ReplyError("each parameter in a list needs a name", raw)
            props[arg["name"]] = arg
            if arg.get("required"):
                required.append(arg["name"])
    elif isinstance(value, dict):
        props = value.get("properties", {} if "type" in value else value)
        required = value.get("required", [])
    else:
        raise ReplyError("reply has no object 'parameters'", raw)
    if not isinstance(props, dict):
        raise ReplyError("parameters.properties must be an object", raw)
    out = {}
    for name, spec in props.items():
        if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
            raise ReplyError(f"parameter name {name!r} is not a Python identifier", raw)
        out[name] = _property(name, spec, raw)
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ReplyError("parameters.required must be a list of names", raw)
    unknown = [r for r in required if r not in out]
    if unknown:
        raise ReplyError(f"required names {unknown} are not among the parameters", raw)
    return {"type": "object", "properties": out, "required": list(dict.fromkeys(required))}


def interface(doc: dict[str, Any], raw: str) -> dict[str, Any]:
    """The validated, normalised interface from a decoded reply (ReplyError when unusable)."""
    name = _identifier(doc.get("name"))
    if name is None:
        raise ReplyError(f"tool name {doc.get('name')!r} is not a snake_case identifier", raw)
    returns = doc.get("returns")
    if isinstance(returns, str):
        returns = {"type": returns}
    rtype = _type(returns.get("type")) if isinstance(returns, dict) else None
    if rtype is None:
        raise ReplyError(f"'returns' needs a JSON Schema type ({', '.join(TYPES)})", raw)
    assert isinstance(returns, dict)
    rdesc = returns.get("description")
    deps = doc.get("dependencies", [])
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list):
        raise ReplyError("'dependencies' must be a list", raw)
    return {"name": name, "description": text(doc, "description", raw),
            "parameters": _parameters(doc.get("parameters", {}), raw),
            "returns": {"type": rtype, "description": rdesc.strip() if isinstance(rdesc, str) else ""},
            "dependencies": [d.strip() for d in deps if isinstance(d, str) and d.strip()]}


# ---- the implementation -------------------------------------------------------------------------


def _check(code: str, iface: dict[str, Any]) -> str | None:
    """None when `code` implements the interface, else why not."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return f"implementation does not parse: {e.msg} (line {e.lineno})"
    name = iface["name"]
    fn = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name),
              None)
    if fn is None:
        found = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        return f"implementation defines no top-level function {name!r} (found {found})"
    a = fn.args
    if a.posonlyargs:
        return f"{name} has positional-only parameters; tools are called by keyword"
    if a.vararg or a.kwarg:
        return f"{name} takes *args or **kwargs; its parameters must be exactly the interface's"
    params = [x.arg for x in a.args + a.kwonlyargs]
    defaults = set(x.arg for x in a.args[len(a.args) - len(a.defaults):])
    defaults |= {x.arg for x, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None}
    expected = list(iface["parameters"]["properties"])
    if sorted(params) != sorted(expected):
        return f"{name}({', '.join(params)}) does not match the interface's parameters ({', '.join(expected)})"
    required = set(iface["parameters"]["required"])
    no_default = [p for p in expected if p not in required and p not in defaults]
    if no_default:
        return f"optional parameters {no_default} of {name} need default values"
    return None


def implementation(raw: str, iface: dict[str, Any]) -> str:
    """The Python code in a reply (a ``` block, else the whole reply) that implements `iface`."""
    blocks: list[str] = [b.strip() for b in _FENCE.findall(raw)] or [raw.strip()]
    errors = []
    for code in blocks:
        why = _check(code, iface)
        if why is None:
            return code
        errors.append(why)
    raise ReplyError(errors[0], raw)


# ---- the stages ---------------------------------------------------------------------------------


def _record(p: dict[str, Any], code: str | None) -> ToolRecord:
    iface = p["interface"]
    return ToolRecord(**common(p, "tool", iface["name"], iface), **iface, implementation=code)


class Tool(CreateStage):
    """Writes a function interface the persona would find useful; queues its implementation."""

    name = "tool"
    task = "tool"
    keys = ("name", "description", "parameters", "returns", "dependencies")
    schema = SCHEMA
    strict = False  # arguments are named by the model: OpenAI's strict mode cannot express that

    def __init__(self, settings: ToolTask, **kw: Any) -> None:
        self.implement = settings.implement
        super().__init__(settings, **kw)

    def fields(self, doc: dict[str, Any], raw: str) -> dict[str, Any]:
        return interface(doc, raw)

    def finish(self, item: WorkItem, p: dict[str, Any], fields: dict[str, Any]) -> Outcome:
        p = carry(p, interface=fields)
        if self.implement:
            return Outcome(follow=[ToolImplement.item(item.key, p)])
        return Outcome(records=[("tool", _record(p, None))])


class ToolImplement(Stage):
    """Asks for the interface's Python implementation and checks it against the interface."""

    name = "tool.implement"

    def __init__(self, settings: ToolTask, *, endpoint: str, model: str, template: str = "") -> None:
        super().__init__(endpoint=endpoint, model=model, parse_retries=settings.parse_retries)
        self.s = settings
        self.template = load_template("tool_implement", template)
        self.template.check("name", "signature", "interface")
        self._shots: list[Message] = []
        for ex in self.template.examples:
            if isinstance(ex.get("interface"), str) and isinstance(ex.get("code"), str):
                iface = json.loads(ex["interface"])
                _, ask = self.template.render(**self._values(iface))
                self._shots += [Message("user", ask), Message("assistant", ex["code"].strip())]

    @staticmethod
    def _values(iface: dict[str, Any]) -> dict[str, str]:
        params = iface["parameters"]
        sig = ", ".join(n if n in params.get("required", []) else f"{n}=..." for n in params["properties"])
        return {"name": iface["name"], "signature": f"{iface['name']}({sig})",
                "interface": json.dumps(iface, ensure_ascii=False, indent=1)}

    @staticmethod
    def item(chain: str, payload: dict[str, Any]) -> WorkItem:
        return WorkItem(key=content_id("tool.implement", chain), stage=ToolImplement.name,
                        payload={**payload, "chain": chain})

    def request(self, item: WorkItem) -> ChatRequest:
        system, ask = self.template.render(**self._values(item.payload["interface"]))
        return ChatRequest(model=self.model, messages=[Message("system", system), *self._shots, Message("user", ask)],
                           max_tokens=self.s.max_tokens, temperature=self.s.temperature)

    def parse(self, item: WorkItem, reply: ChatReply) -> Outcome:
        p = item.payload
        code = implementation(reply.content, p["interface"])
        return Outcome(records=[("tool", _record({**p, "usage": add_usage(p["usage"], reply)}, code))])
