"""Persona-driven synthesis (Persona Hub, section 3): one small stage per task and follow-up.

Stage names, as work items carry them:

    math -> math.solve x k                  a problem, k solutions, a vote on the answer
    logic                                   a puzzle and its answer
    instruction -> instruction.turn ...     a user prompt, optionally a conversation
                -> instruction.dialogue ... and a conversation with a partner persona
    knowledge                               a Quora-style question and answer
    npc                                     a game NPC for a world file
    tool -> tool.implement                  a function interface, then its Python code

Each chain ends in one record for the sink named after the task (SCHEMA.md documents them).
"""

from __future__ import annotations

from typing import Any

from engine.config import Synthesis
from engine.ids import content_id
from engine.io.checkpoint import WorkItem
from engine.stages.base import Stage
from engine.stages.synthesis.base import PERSONA_KEYS, CreateStage, demo_key, load_demos
from engine.stages.synthesis.instruction import Dialogue, Instruction, InstructionTurn
from engine.stages.synthesis.knowledge import Knowledge
from engine.stages.synthesis.logic import Logic
from engine.stages.synthesis.maths import MathProblem, MathSolve
from engine.stages.synthesis.npc import Npc
from engine.stages.synthesis.tool import Tool, ToolImplement

__all__ = ["CREATE", "build_task_stages", "demo_key", "demos_missing_personas", "task_item"]

CREATE: dict[str, type[CreateStage]] = {"math": MathProblem, "logic": Logic, "instruction": Instruction,
                                        "knowledge": Knowledge, "npc": Npc, "tool": Tool}


def build_task_stages(cfg: Synthesis, *, model: str, solver_model: str, solver_endpoint: str, endpoint: str,
                      structured: bool, demo_personas: dict[str, str]) -> dict[str, Stage]:
    """Every stage the configured tasks need, by stage name (follow-ups included)."""
    stages: dict[str, Stage] = {}
    for task in cfg.tasks:
        settings: Any = cfg.task(task)
        stages[task] = CREATE[task](settings, mode=cfg.mode_of(task), endpoint=endpoint, model=model,
                                    structured=structured, demo_personas=demo_personas)
        if task == "math":
            stages[MathSolve.name] = MathSolve(settings, endpoint=solver_endpoint, model=solver_model,
                                               template=settings.solve_template)
        elif task == "instruction":
            stages[InstructionTurn.name] = InstructionTurn(settings, endpoint=endpoint, model=model,
                                                           template=settings.turn_template)
            stages[Dialogue.name] = Dialogue(settings, endpoint=endpoint, model=model,
                                             template=settings.dialogue_template)
        elif task == "tool":
            stages[ToolImplement.name] = ToolImplement(settings, endpoint=endpoint, model=model,
                                                       template=settings.implement_template)
    return stages


def task_item(task: str, persona: dict[str, Any], *, partner: dict[str, Any] | None = None) -> WorkItem:
    """The first work item of `task` for an accepted persona record (`partner`: for dialogues)."""
    if task not in CREATE:
        raise ValueError(f"unknown synthesis task {task!r}")
    p = {"persona_id": persona["id"], **{k: persona.get(k) for k in PERSONA_KEYS if k in persona}}
    p["source_id"] = persona.get("source_id") or ""
    if task == "instruction" and partner is not None:
        p["partner"] = {"id": partner["id"], "persona": partner["persona"]}
    return WorkItem(key=content_id("task", task, persona["id"]), stage=task, payload=p)


def demos_missing_personas(cfg: Synthesis) -> list[str]:
    """Texts of the demonstrations that persona_enhanced tasks use and that lack a persona."""
    out: dict[str, None] = {}
    for task in cfg.tasks:
        if cfg.mode_of(task) != "persona_enhanced":
            continue
        for d in load_demos(task, cfg.task(task).demos, CREATE[task].keys):
            if d.persona is None:
                out[d.text] = None
    return list(out)
