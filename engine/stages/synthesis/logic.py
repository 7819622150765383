"""Logical reasoning: a puzzle with its answer; style "trick" asks for playful, wordplay-driven ones."""

from __future__ import annotations

from typing import Any

from engine.config import LogicTask
from engine.io.checkpoint import WorkItem
from engine.stages.base import Outcome
from engine.stages.synthesis.base import CreateStage, TaskRecord, common, fill


class LogicRecord(TaskRecord, kw_only=True):
    """A logic puzzle and its worked answer."""

    puzzle: str
    answer: str


class Logic(CreateStage):
    """Writes a logic puzzle (and its answer) set in the persona's world."""

    name = "logic"
    task = "logic"
    keys = ("puzzle", "answer")
    aliases = {"puzzle": ("question", "problem"), "answer": ("solution",)}

    def __init__(self, settings: LogicTask, **kw: Any) -> None:
        self.style = settings.style
        super().__init__(settings, **kw)

    def constraints(self) -> dict[str, Any]:
        return {"style": self.style}

    def render_constraints(self) -> str:
        return fill(self.template, "style", self.style)

    def finish(self, item: WorkItem, p: dict[str, Any], fields: dict[str, Any]) -> Outcome:
        rec = LogicRecord(**common(p, "logic", fields["puzzle"]), **fields)
        return Outcome(records=[("logic", rec)])
