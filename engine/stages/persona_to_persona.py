"""Persona-to-Persona: the people in a close relationship with an accepted persona."""

from __future__ import annotations

import json
from typing import Any

from engine import prompts
from engine.client.protocol import ChatReply, ChatRequest, Message
from engine.config import Expansion
from engine.errors import ReplyError
from engine.ids import content_id
from engine.io.checkpoint import WorkItem
from engine.stages.base import Candidate, Outcome, Stage, usage_dict
from engine.stages.parsing import json_object
from engine.stages.text_to_persona import response_format

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"relations": {"type": "array", "items": {
        "type": "object",
        "properties": {"relation": {"type": "string"}, "persona": {"type": "string"}},
        "required": ["relation", "persona"], "additionalProperties": False}}},
    "required": ["relations"],
    "additionalProperties": False,
}


class PersonaToPersona(Stage):
    """Expands one persona into up to `relations` related personas at depth + 1."""

    name = "persona_to_persona"

    def __init__(self, settings: Expansion, *, model: str, structured: bool = True) -> None:
        super().__init__(endpoint=settings.endpoint, model=model, parse_retries=settings.parse_retries)
        self.s = settings
        self.structured = structured
        self.template = prompts.load("persona_to_persona", settings.template)
        self.template.check("persona", "count")
        self._shots: list[Message] = []
        for ex in self.template.examples:
            rels = ex.get("relations")
            if not isinstance(ex.get("persona"), str) or not isinstance(rels, list):
                continue
            _, user = self.template.render(persona=ex["persona"], count=len(rels))
            self._shots += [Message("user", user), Message("assistant", json.dumps({"relations": rels}))]

    @staticmethod
    def item(persona: dict[str, Any]) -> WorkItem:
        """The expansion work for an accepted persona record."""
        keep = ("id", "persona", "source_id", "root_id", "depth")
        return WorkItem(key=content_id("p2p", persona["id"]), stage=PersonaToPersona.name,
                        payload={k: persona[k] for k in keep})

    def request(self, item: WorkItem) -> ChatRequest:
        system, user = self.template.render(persona=item.payload["persona"], count=self.s.relations)
        return ChatRequest(model=self.model, messages=[Message("system", system), *self._shots, Message("user", user)],
                           max_tokens=self.s.max_tokens, temperature=self.s.temperature,
                           response_format=response_format("relations", SCHEMA) if self.structured else None)

    def parse(self, item: WorkItem, reply: ChatReply) -> Outcome:
        raw = reply.content
        doc = json_object(raw)
        rels = doc.get("relations")
        if isinstance(rels, dict):
            rels = [rels]
        if not isinstance(rels, list):
            raise ReplyError("reply has no list 'relations'", raw)
        p = item.payload
        seen: set[str] = set()
        cands: list[Candidate] = []
        for r in rels:
            if not isinstance(r, dict):
                continue
            text, relation = r.get("persona"), r.get("relation")
            if not isinstance(text, str) or not text.strip():
                continue
            text = " ".join(text.split())
            rel = " ".join(relation.split()).lower() if isinstance(relation, str) and relation.strip() else "related"
            if text.casefold() in seen:
                continue
            seen.add(text.casefold())
            cands.append(Candidate(id=content_id("persona", item.key, rel, text), persona=text,
                                   source_id=p["source_id"], root_id=p["root_id"], parent_id=p["id"], relation=rel,
                                   depth=int(p["depth"]) + 1, model=reply.model or self.model,
                                   usage=usage_dict(reply) if not cands else None))
            if len(cands) >= self.s.relations:
                break
        if not cands:
            raise ReplyError("reply names no related persona", raw)
        return Outcome(candidates=cands)
