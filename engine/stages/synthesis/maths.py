"""Math: a problem written for the persona, then k independent solutions and a vote on the answer.

"math" writes the problem and queues solution 0; each "math.solve" item carries the problem and
the solutions so far in its payload and queues the next one, and the last writes the record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from engine.client.protocol import ChatReply, ChatRequest, Message
from engine.config import MathTask
from engine.errors import ReplyError
from engine.ids import content_id
from engine.io.checkpoint import WorkItem
from engine.records import Usage
from engine.stages import answers
from engine.stages.base import Outcome, Stage
from engine.stages.synthesis.base import CreateStage, TaskRecord, add_usage, carry, common, fill, load_template

SOLVER_TEMPERATURE = 0.7  # used when the task's temperature is 0: identical solutions would prove nothing


class Vote(msgspec.Struct):
    """How many solutions reached one normalised answer."""

    answer: str
    count: int


#: Appended to the solver's request for a problem with sub-questions (`[parts] note` in the template overrides it).
PARTS_NOTE = ("\n\nThe problem has {parts} parts, (a), (b) and so on. End with one line per part, in order, "
              "each with that part's final answer in its own \\boxed{{}}.")


class MathRecord(TaskRecord, kw_only=True):
    """A math problem with its solutions and the vote on their answers."""

    problem: str
    solutions: list[str]
    extracted: list[str | None]  # each solution's final answer as written
    answers: list[str | None]  # ... normalised (engine.stages.answers.normalize)
    votes: list[Vote]
    agreement: int  # votes for the most common answer
    required: int  # m: votes needed to keep the answer
    answer: str | None  # the agreed answer, or None
    verified: bool
    solver_model: str
    solver_usage: Usage | None = None  # the k solutions' share of `usage`, priced as `solver_model`


class MathProblem(CreateStage):
    """Writes a math problem for the persona under the configured topic / level / sub-questions."""

    name = "math"
    task = "math"
    keys = ("problem",)
    aliases = {"problem": ("question",)}

    def __init__(self, settings: MathTask, **kw: Any) -> None:
        self.m = settings
        super().__init__(settings, **kw)

    def constraints(self) -> dict[str, Any]:
        return {"topic": self.m.topic, "level": self.m.level, "sub_questions": self.m.sub_questions}

    def render_constraints(self) -> str:
        t = self.template
        out = ""
        if self.m.topic:
            out += fill(t, "constraints", "topic", topic=self.m.topic)
        if self.m.level:
            out += fill(t, "constraints", "level", level=self.m.level)
        if self.m.sub_questions:
            out += fill(t, "constraints", "sub_questions", sub_questions=self.m.sub_questions)
        return out

    def finish(self, item: WorkItem, p: dict[str, Any], fields: dict[str, Any]) -> Outcome:
        return Outcome(follow=[MathSolve.item(item.key, carry(p, problem=fields["problem"], solutions=[]))])


class MathSolve(Stage):
    """Solves the problem once more; after the k-th solution, votes and writes the record."""

    name = "math.solve"

    def __init__(self, settings: MathTask, *, endpoint: str, model: str, template: str = "") -> None:
        super().__init__(endpoint=endpoint, model=model, parse_retries=settings.parse_retries)
        self.s = settings
        self.template = load_template("math_solve", template)
        self.template.check("problem")
        self._shots: list[Message] = []
        if "note" in self.template.fragments.get("parts", {}):
            fill(self.template, "parts", "note", parts=2)  # a broken note fails here, as a ConfigError naming it
            self._parts_note: Callable[[int], str] = lambda n: fill(self.template, "parts", "note", parts=n)
        else:  # a user template without [parts]
            self._parts_note = lambda n: PARTS_NOTE.format(parts=n)
        for ex in self.template.examples:
            if isinstance(ex.get("problem"), str) and isinstance(ex.get("solution"), str):
                _, ask = self.template.render(problem=ex["problem"])
                self._shots += [Message("user", ask), Message("assistant", ex["solution"])]

    @staticmethod
    def item(chain: str, payload: dict[str, Any]) -> WorkItem:
        """Solution number len(payload["solutions"]) of the problem that work item `chain` wrote."""
        n = len(payload["solutions"])
        return WorkItem(key=content_id("math.solve", chain, n), stage=MathSolve.name,
                        payload={**payload, "chain": chain})

    def request(self, item: WorkItem) -> ChatRequest:
        system, ask = self.template.render(problem=item.payload["problem"])
        parts = _parts(item.payload)
        if parts > 1:  # one \boxed{} per part, in order, so that every part is voted on
            ask += self._parts_note(parts)
        return ChatRequest(model=self.model, messages=[Message("system", system), *self._shots, Message("user", ask)],
                           max_tokens=self.s.solver_max_tokens,
                           temperature=self.s.solver_temperature or SOLVER_TEMPERATURE)

    def parse(self, item: WorkItem, reply: ChatReply) -> Outcome:
        solution = reply.content.strip()
        if not solution:
            raise ReplyError("reply is empty", reply.content)
        p = item.payload
        solutions = [*p["solutions"], solution]
        nxt = {**carry(p, problem=p["problem"], solutions=solutions), "usage": add_usage(p["usage"], reply),
               "solver_usage": add_usage(p.get("solver_usage"), reply),
               "solver_model": p.get("solver_model") or reply.model or self.model}
        if len(solutions) < self.s.solutions:
            return Outcome(follow=[MathSolve.item(p["chain"], nxt)])
        return Outcome(records=[("math", record(nxt, self.s.agree))])


def _parts(p: dict[str, Any]) -> int:
    """How many sub-questions the problem has (its constraints say; 0 or 1 means one answer)."""
    constraints = p.get("constraints") or {}
    return int(constraints.get("sub_questions") or 0) if isinstance(constraints, dict) else 0


def record(p: dict[str, Any], agree: int) -> MathRecord:
    """The math record of a finished chain: extraction, normalisation and the vote.

    With sub-questions, a solution's answer is its last `parts` boxed answers joined by "; ",
    each part normalised: solutions agree only when they agree on every part.
    """
    parts = _parts(p)
    if parts > 1:
        extracted = [answers.extract_parts(s, parts) for s in p["solutions"]]
        normalised = [answers.normalize_parts(a) for a in extracted]
    else:
        extracted = [answers.extract(s) for s in p["solutions"]]
        normalised = [answers.normalize(a) for a in extracted]
    verdict = answers.vote(normalised, agree)
    return MathRecord(**common(p, "math", p["problem"]), problem=p["problem"], solutions=p["solutions"],
                      extracted=extracted, answers=normalised, votes=[Vote(a, n) for a, n in verdict.counts],
                      agreement=verdict.agreement, required=agree, answer=verdict.answer, verified=verdict.verified,
                      solver_model=p["solver_model"],
                      solver_usage=Usage(**p["solver_usage"]) if p.get("solver_usage") else None)
