"""Text-to-Persona: from any text, the persona likely to read / write / like / dislike it."""

from __future__ import annotations

import json
from typing import Any

from engine import prompts
from engine.client.protocol import ChatReply, ChatRequest, Message
from engine.config import TextToPersona as Settings
from engine.ids import content_id
from engine.io.checkpoint import WorkItem
from engine.stages.base import Candidate, Outcome, Stage, usage_dict
from engine.stages.parsing import clean_line, json_object, text_field

# no length bounds: llama.cpp expands them into a grammar that is slow to sample
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"persona": {"type": "string"}},
    "required": ["persona"],
    "additionalProperties": False,
}


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI `response_format` asking for JSON that matches `schema`."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


class TextToPersona(Stage):
    """Turns an input text into one persona candidate at depth 0."""

    name = "text_to_persona"

    def __init__(self, settings: Settings, *, model: str, structured: bool = True) -> None:
        super().__init__(endpoint=settings.endpoint, model=model, parse_retries=settings.parse_retries)
        self.s = settings
        self.template = prompts.load("text_to_persona", settings.template)
        self.structured = structured and settings.format == "json"
        t = self.template
        self._fixed = {
            "relation": t.fragment("relation", settings.relation),
            "granularity": t.fragment("granularity", settings.granularity),
            "format": t.fragment("format", settings.format),
        }
        t.check("text", *self._fixed)
        self._shots = self._demonstrations()

    def _demonstrations(self) -> list[Message]:
        """The template's examples as user/assistant turns, in the configured granularity and format."""
        turns: list[Message] = []
        for ex in self.template.examples:
            persona = ex.get(self.s.granularity) or ex.get("fine") or ex.get("persona")
            if not isinstance(ex.get("text"), str) or not isinstance(persona, str):
                continue
            _, user = self.template.render(text=ex["text"], **self._fixed)
            answer = json.dumps({"persona": persona}) if self.s.format == "json" else persona
            turns += [Message("user", user), Message("assistant", answer)]
        return turns

    @staticmethod
    def item(source_id: str, text: str, ordinal: int) -> WorkItem:
        """The work item for one input text (its key is stable across runs)."""
        return WorkItem(key=content_id("t2p", source_id, ordinal), stage=TextToPersona.name,
                        payload={"source_id": source_id, "text": text})

    def request(self, item: WorkItem) -> ChatRequest:
        system, user = self.template.render(text=item.payload["text"], **self._fixed)
        return ChatRequest(
            model=self.model,
            messages=[Message("system", system), *self._shots, Message("user", user)],
            max_tokens=self.s.max_tokens,
            temperature=self.s.temperature,
            stop=["\n\n"] if self.s.format == "plain" else None,
            response_format=response_format("persona", SCHEMA) if self.structured else None,
        )

    def parse(self, item: WorkItem, reply: ChatReply) -> Outcome:
        raw = reply.content
        if self.s.format == "json":
            persona = text_field(json_object(raw), "persona", raw)
        else:
            persona = clean_line(raw)
        source_id = item.payload["source_id"]
        cid = content_id("persona", item.key, persona)
        cand = Candidate(id=cid, persona=persona, source_id=source_id, root_id=None, depth=0,
                         model=reply.model or self.model, usage=usage_dict(reply))
        return Outcome(candidates=[cand])
