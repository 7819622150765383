"""Instructions: what the persona would ask an AI assistant, continued into conversations.

"instruction" writes the first user prompt. With `turns > 0` a chain of "instruction.turn"
items follows: the assistant's reply (the model as assistant), then the persona's next turn
(the model in role, with the roles swapped), `turns` times; the payload carries the messages.
With `dialogue` and a partner persona, "instruction.dialogue" items alternate between the two
personas for `dialogue_turns` messages. Each chain writes one record at its end.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from engine.client.protocol import ChatReply, ChatRequest, Message
from engine.config import InstructionTask
from engine.errors import ReplyError
from engine.ids import content_id
from engine.io.checkpoint import WorkItem
from engine.stages.base import Outcome, Stage
from engine.stages.parsing import json_object
from engine.stages.synthesis.base import (
    CreateStage,
    TaskRecord,
    add_usage,
    carry,
    common,
    load_template,
    plain,
    sub,
    text,
)


class Turn(msgspec.Struct):
    """One message: role user | assistant (instruction, conversation) or persona | partner (dialogue)."""

    role: str
    content: str


class InstructionRecord(TaskRecord, kw_only=True):
    """A user prompt, a conversation with an assistant, or a dialogue between two personas."""

    kind: Kind
    instruction: str  # the first message
    messages: list[Turn]
    partner_id: str | None = None  # dialogue only: the other persona
    partner: str | None = None


Kind = Literal["instruction", "conversation", "dialogue"]


def _record(p: dict[str, Any], kind: Kind, messages: list[dict[str, str]]) -> InstructionRecord:
    partner = p.get("partner") if kind == "dialogue" else None
    return InstructionRecord(
        **common(p, "instruction", kind, partner["id"] if partner else None, messages), kind=kind,
        instruction=messages[0]["content"], messages=[Turn(m["role"], m["content"]) for m in messages],
        partner_id=partner["id"] if partner else None, partner=partner["persona"] if partner else None)


class Instruction(CreateStage):
    """Writes the first user prompt; queues the conversation and dialogue chains when configured."""

    name = "instruction"
    task = "instruction"
    keys = ("instruction",)
    aliases = {"instruction": ("prompt", "request", "message")}

    def __init__(self, settings: InstructionTask, **kw: Any) -> None:
        self.i = settings
        super().__init__(settings, **kw)

    def decode(self, raw: str) -> dict[str, Any]:
        try:
            return json_object(raw)
        except ReplyError:  # a plain-text prompt is a usable answer too
            return {"instruction": plain(raw)}

    def fields(self, doc: dict[str, Any], raw: str) -> dict[str, Any]:
        if "instruction" not in doc and len(doc) == 1 and isinstance(next(iter(doc.values())), str):
            doc = {"instruction": next(iter(doc.values()))}  # {"question": ...} and the like
        return {"instruction": text(doc, "instruction", raw, self.aliases["instruction"])}

    def finish(self, item: WorkItem, p: dict[str, Any], fields: dict[str, Any]) -> Outcome:
        first = {"role": "user", "content": fields["instruction"]}
        out = Outcome()
        if self.i.turns:
            out.follow.append(InstructionTurn.item(item.key, carry(p, messages=[first])))
        else:
            out.records.append(("instruction", _record(p, "instruction", [first])))
        partner = p.get("partner")
        if self.i.dialogue and partner and partner.get("id") != p["persona_id"]:
            base = carry(p, messages=[], mode="zero_shot", usage=None)
            out.follow.append(Dialogue.item(item.key, base))
        return out


class InstructionTurn(Stage):
    """One step of the conversation: the assistant's reply, or the persona's next turn."""

    name = "instruction.turn"

    def __init__(self, settings: InstructionTask, *, endpoint: str, model: str, template: str = "") -> None:
        super().__init__(endpoint=endpoint, model=model, parse_retries=settings.parse_retries)
        self.s = settings
        self.assistant = load_template("instruction_turn", template)
        self.persona = sub(self.assistant, "persona")
        self.assistant.check("message")
        self.persona.check("persona", "message")

    @staticmethod
    def item(chain: str, payload: dict[str, Any]) -> WorkItem:
        n = len(payload["messages"])
        return WorkItem(key=content_id("instruction.turn", chain, n), stage=InstructionTurn.name,
                        payload={**payload, "chain": chain})

    def request(self, item: WorkItem) -> ChatRequest:
        p = item.payload
        msgs: list[dict[str, str]] = p["messages"]
        if msgs[-1]["role"] == "user":  # the assistant answers
            system, last = self.assistant.render(message=msgs[-1]["content"])
            history = [Message(m["role"], m["content"]) for m in msgs[:-1]]
        else:  # the persona speaks next: the roles swap, so the model writes the user's side
            system, last = self.persona.render(persona=p["persona"], message=msgs[-1]["content"])
            swap = {"user": "assistant", "assistant": "user"}
            history = [Message(swap[m["role"]], m["content"]) for m in msgs[:-1]]
        return ChatRequest(model=self.model, messages=[Message("system", system), *history, Message("user", last)],
                           max_tokens=self.s.max_tokens, temperature=self.s.temperature)

    def parse(self, item: WorkItem, reply: ChatReply) -> Outcome:
        p = item.payload
        role = "assistant" if p["messages"][-1]["role"] == "user" else "user"
        msgs = [*p["messages"], {"role": role, "content": plain(reply.content)}]
        nxt = {**carry(p, messages=msgs), "usage": add_usage(p["usage"], reply)}
        if len(msgs) < 2 + 2 * self.s.turns:  # the first exchange, then `turns` more; the assistant ends it
            return Outcome(follow=[InstructionTurn.item(p["chain"], nxt)])
        return Outcome(records=[("instruction", _record(nxt, "conversation", msgs))])


class Dialogue(Stage):
    """One line of a conversation between the persona and its partner, each played by the model in turn."""

    name = "instruction.dialogue"

    def __init__(self, settings: InstructionTask, *, endpoint: str, model: str, template: str = "") -> None:
        super().__init__(endpoint=endpoint, model=model, parse_retries=settings.parse_retries)
        self.s = settings
        self.template = load_template("instruction_dialogue", template)
        self.opening = sub(self.template, "opening")
        self.template.check("speaker", "other", "message")
        self.opening.check("speaker", "other")

    @staticmethod
    def item(chain: str, payload: dict[str, Any]) -> WorkItem:
        n = len(payload["messages"])
        return WorkItem(key=content_id("instruction.dialogue", chain, n), stage=Dialogue.name,
                        payload={**payload, "chain": chain})

    def request(self, item: WorkItem) -> ChatRequest:
        p = item.payload
        msgs: list[dict[str, str]] = p["messages"]
        me = "persona" if len(msgs) % 2 == 0 else "partner"  # the persona opens
        names = {"persona": p["persona"], "partner": p["partner"]["persona"]}
        other = names["partner" if me == "persona" else "persona"]
        system, opening = self.opening.render(speaker=names[me], other=other)
        history = [Message("user", opening)] if me == "persona" else []  # a chat must start with a user turn
        for m in msgs:
            if m["role"] == me:
                history.append(Message("assistant", m["content"]))
            else:
                history.append(Message("user", self.template.render(speaker=names[me], other=other,
                                                                    message=m["content"])[1]))
        return ChatRequest(model=self.model, messages=[Message("system", system), *history],
                           max_tokens=self.s.max_tokens, temperature=self.s.temperature)

    def parse(self, item: WorkItem, reply: ChatReply) -> Outcome:
        p = item.payload
        role = "persona" if len(p["messages"]) % 2 == 0 else "partner"
        msgs = [*p["messages"], {"role": role, "content": plain(reply.content)}]
        nxt = {**carry(p, messages=msgs), "usage": add_usage(p["usage"], reply)}
        if len(msgs) < self.s.dialogue_turns:
            return Outcome(follow=[Dialogue.item(p["chain"], nxt)])
        return Outcome(records=[("instruction", _record(nxt, "dialogue", msgs))])
