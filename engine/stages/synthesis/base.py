"""What the synthesis tasks share: demonstrations, the three prompting modes, record fields.

A task's first stage (`CreateStage`) puts the persona into the task's template. Its
demonstrations come from a JSON Lines file, one `{"persona"?: str, "output": {...}}` a line:
zero_shot sends none; few_shot sends `shots` of them as user/assistant turns; persona_enhanced
pairs each with its persona in the user turn. Follow-up stages carry everything the final
record needs in their work item's payload, so a chain survives a crash without stage state.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from engine import prompts
from engine.client.protocol import ChatReply, ChatRequest, Message
from engine.config import Task
from engine.errors import ConfigError, ReplyError
from engine.ids import content_id
from engine.io.checkpoint import WorkItem
from engine.records import Usage, now_iso
from engine.stages.base import Outcome, Stage, usage_dict
from engine.stages.parsing import json_object
from engine.stages.text_to_persona import response_format

PERSONA_KEYS = ("persona_id", "persona", "source_id", "depth", "root_id")


class TaskRecord(msgspec.Struct, kw_only=True):
    """The fields every task record has (see SCHEMA.md); each task adds its own after them."""

    id: str
    persona_id: str
    persona: str
    task: str
    mode: str
    constraints: dict[str, Any]
    model: str
    usage: Usage
    created_at: str


# ---- demonstrations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    """One demonstration: the output a task should produce, and the persona it was written for."""

    output: dict[str, Any]
    persona: str | None
    text: str  # the output as text: what Text-to-Persona reads when the persona is missing


def demo_text(output: dict[str, Any]) -> str:
    """A demonstration's output rendered as text (its string fields; others as JSON), in order."""
    parts = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in output.values()]
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def demo_key(text: str) -> str:
    """The key of a derived demonstration persona in `demo_personas`."""
    return content_id("demo", text)


def load_demos(task: str, path: str = "", keys: tuple[str, ...] = ()) -> list[Demo]:
    """The demonstrations of `task` from `path` (or the packaged file); each must hold `keys`."""
    where = f"synthesis.{task}.demos"
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(where, f"cannot read {path}: {e.strerror}") from None
    else:
        path = f"engine/data/demos/{task}.jsonl"
        text = (resources.files("engine") / "data" / "demos" / f"{task}.jsonl").read_text(encoding="utf-8")
    demos = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as e:
            raise ConfigError(where, f"{path}:{n}: not JSON ({e})") from None
        out = doc.get("output") if isinstance(doc, dict) else None
        persona = doc.get("persona") if isinstance(doc, dict) else None
        if not isinstance(out, dict):
            raise ConfigError(where, f"{path}:{n}: needs an object field \"output\"")
        if persona is not None and not isinstance(persona, str):
            raise ConfigError(where, f"{path}:{n}: \"persona\" must be a string")
        missing = [k for k in keys if k not in out]
        if missing:
            raise ConfigError(where, f"{path}:{n}: output lacks {', '.join(missing)}")
        demos.append(Demo(output=out, persona=(persona or "").strip() or None, text=demo_text(out)))
    return demos


def pick(demos: list[Demo], persona_id: str, shots: int) -> list[Demo]:
    """`shots` demonstrations, rotated by a hash of the persona id: the same persona, the same prompt."""
    if not demos:
        return []
    start = int(content_id("shots", persona_id)[:8], 16) % len(demos)
    return [demos[(start + i) % len(demos)] for i in range(min(shots, len(demos)))]


# ---- templates ----------------------------------------------------------------------------------


def load_template(name: str, override: str = "") -> prompts.Template:
    """engine/prompts/tasks/`name`.toml, or the file at `override`."""
    return prompts.load(f"tasks/{name}", override)


def sub(t: prompts.Template, table: str) -> prompts.Template:
    """The template's `[table]` (a `user`, optionally a `system`) as a template of its own."""
    frag = t.fragments.get(table, {})
    user = frag.get("user")
    if not isinstance(user, str):
        raise ConfigError(f"{t.source}: [{table}].user", "missing from the template")
    system = frag.get("system", t.system)
    return replace(t, name=f"{t.name}.{table}", system=system if isinstance(system, str) else t.system, user=user,
                   examples=[], source=f"{t.source} [{table}]")


def fill(t: prompts.Template, table: str, key: str, **values: Any) -> str:
    """Fragment `[table].key` with its placeholders filled."""
    return replace(t, system="", user=t.fragment(table, key), source=f"{t.source} [{table}].{key}").render(**values)[1]


def object_schema(*keys: str) -> dict[str, Any]:
    """A flat JSON schema of required string fields (no length bounds: they slow llama.cpp's grammar)."""
    return {"type": "object", "properties": {k: {"type": "string"} for k in keys}, "required": list(keys),
            "additionalProperties": False}


# ---- replies ------------------------------------------------------------------------------------

_ROLE_LABEL = re.compile(r"^\s*(?:\*\*)?(?:user|assistant|ai|me|you|reply|message)(?:\*\*)?\s*:\s*", re.I)
_QUOTES = "\"“”"


def text(doc: dict[str, Any], key: str, raw: str, aliases: tuple[str, ...] = ()) -> str:
    """A non-empty string field (or an alias of it); inner line breaks kept, spaces trimmed."""
    for k in (key, *aliases):
        value = doc.get(k)
        if isinstance(value, str) and value.strip():
            return "\n".join(line.rstrip() for line in value.strip().splitlines())
    raise ReplyError(f"reply has no non-empty string {key!r}", raw)


def plain(raw: str) -> str:
    """A free-text reply (a conversation turn): without a role label or wrapping quotes."""
    t = _ROLE_LABEL.sub("", raw.strip()).strip()
    if len(t) > 1 and t[0] in _QUOTES and t[-1] in _QUOTES:
        t = t[1:-1].strip()
    if not t:
        raise ReplyError("reply is empty", raw)
    return t


def add_usage(total: dict[str, int] | None, reply: ChatReply) -> dict[str, int]:
    """`total` plus this reply's usage (a reply without usage adds nothing)."""
    out = dict(total or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    for k, v in (usage_dict(reply) or {}).items():
        out[k] = out.get(k, 0) + v
    return out


def common(p: dict[str, Any], task: str, *content: Any) -> dict[str, Any]:
    """The shared record fields, from a chain's payload; the id hashes task, persona and content."""
    return {
        "id": content_id(task, p["persona_id"], *[c if isinstance(c, str) else json.dumps(c, sort_keys=True)
                                                  for c in content]),
        "persona_id": p["persona_id"], "persona": p["persona"], "task": task, "mode": p["mode"],
        "constraints": p["constraints"], "model": p["model"], "usage": Usage(**p["usage"]), "created_at": now_iso(),
    }


def carry(p: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A follow-up payload: the persona fields and the chain's shared state, plus `more`."""
    keep = (*PERSONA_KEYS, "mode", "constraints", "model", "usage", "partner")
    return {**{k: p[k] for k in keep if k in p}, **more}


# ---- the creating stage -------------------------------------------------------------------------


class CreateStage(Stage):
    """The first stage of a task: persona (+ demonstrations) in, the task's JSON fields out."""

    task: ClassVar[str] = ""
    keys: ClassVar[tuple[str, ...]] = ()  # the JSON fields of a reply (and of a demonstration's output)
    aliases: ClassVar[dict[str, tuple[str, ...]]] = {}
    schema: ClassVar[dict[str, Any] | None] = None  # None: object_schema(*keys)
    strict: ClassVar[bool] = True

    def __init__(self, settings: Task, *, mode: str, endpoint: str, model: str, structured: bool = True,
                 demo_personas: dict[str, str] | None = None) -> None:
        super().__init__(endpoint=endpoint, model=model, parse_retries=settings.parse_retries)
        self.s = settings
        self.mode = mode
        self.structured = structured
        self.template = load_template(self.task, settings.template)
        self.demo_template = sub(self.template, "demo")
        self.demos = [] if mode == "zero_shot" else load_demos(self.task, settings.demos, self.keys)
        self.demo_personas = demo_personas or {}
        self.fixed = self.fixed_values()
        self.constraint_text = self.render_constraints()
        self.template.check("persona", "constraints", *self.fixed)
        self.demo_template.check("constraints", *self.fixed)

    # hooks a task may override
    def fixed_values(self) -> dict[str, str]:
        """Placeholders besides {persona} and {constraints} that every prompt fills (e.g. {world})."""
        return {}

    def constraints(self) -> dict[str, Any]:
        """The constraints recorded on every record of this task."""
        return {}

    def render_constraints(self) -> str:
        """The {constraints} text of the final request (demonstration turns get "")."""
        return ""

    def fields(self, doc: dict[str, Any], raw: str) -> dict[str, Any]:
        """The validated task fields of a decoded reply (raise ReplyError when unusable)."""
        return {k: text(doc, k, raw, self.aliases.get(k, ())) for k in self.keys}

    def decode(self, raw: str) -> dict[str, Any]:
        return json_object(raw)

    def finish(self, item: WorkItem, p: dict[str, Any], fields: dict[str, Any]) -> Outcome:
        """The outcome once the reply is valid: by default, the record."""
        raise NotImplementedError

    # the Stage hooks
    def demo_answer(self, d: Demo) -> str:
        return json.dumps({k: d.output[k] for k in self.keys}, ensure_ascii=False)

    def messages(self, item: WorkItem) -> list[Message]:
        p = item.payload
        system, user = self.template.render(persona=p["persona"], constraints=self.constraint_text, **self.fixed)
        turns: list[Message] = []
        for d in pick(self.demos, p["persona_id"], self.s.shots):
            persona = d.persona or self.demo_personas.get(demo_key(d.text))
            if self.mode == "persona_enhanced" and persona:
                _, ask = self.template.render(persona=persona, constraints="", **self.fixed)
            else:  # plain few-shot, or a demonstration whose persona could not be derived
                _, ask = self.demo_template.render(constraints="", **self.fixed)
            turns += [Message("user", ask), Message("assistant", self.demo_answer(d))]
        return [Message("system", system), *turns, Message("user", user)]

    def request(self, item: WorkItem) -> ChatRequest:
        fmt = None
        if self.structured:
            schema = self.schema if self.schema is not None else object_schema(*self.keys)
            fmt = response_format(self.task, schema)
            fmt["json_schema"]["strict"] = self.strict
        return ChatRequest(model=self.model, messages=self.messages(item), max_tokens=self.s.max_tokens,
                           temperature=self.s.temperature, response_format=fmt)

    def parse(self, item: WorkItem, reply: ChatReply) -> Outcome:
        fields = self.fields(self.decode(reply.content), reply.content)
        p = {**item.payload, "mode": self.mode, "constraints": self.constraints(),
             "model": reply.model or self.model, "usage": add_usage(None, reply)}
        return self.finish(item, p, fields)
