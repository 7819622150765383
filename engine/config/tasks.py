"""The `[synthesis]` section: the six tasks and their shared settings."""

from __future__ import annotations

from typing import Literal

import msgspec

from engine.config.sections import NonNegFloat, NonNegInt, PosInt, _Base

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
