"""Knowledge-rich text: a Quora-style question and an answer written from the persona's expertise."""

from __future__ import annotations

from typing import Any

from engine.io.checkpoint import WorkItem
from engine.stages.base import Outcome
from engine.stages.synthesis.base import CreateStage, TaskRecord, common


class KnowledgeRecord(TaskRecord, kw_only=True):
    """A question and a knowledge-rich answer."""

    question: str
    answer: str


class Knowledge(CreateStage):
    """Writes a question the persona knows about and answers it in depth."""

    name = "knowledge"
    task = "knowledge"
    keys = ("question", "answer")
    aliases = {"question": ("title",), "answer": ("article", "text")}

    def finish(self, item: WorkItem, p: dict[str, Any], fields: dict[str, Any]) -> Outcome:
        rec = KnowledgeRecord(**common(p, "knowledge", fields["question"]), **fields)
        return Outcome(records=[("knowledge", rec)])
