"""The Persona Hub method wired onto a pipeline: which stages run and what an accepted persona spawns."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.config import Config
from engine.io.checkpoint import WorkItem
from engine.pipeline import EndpointRuntime, Pipeline
from engine.records import Persona
from engine.stages.base import Stage
from engine.stages.persona_to_persona import PersonaToPersona
from engine.stages.text_to_persona import TextToPersona


def build_stages(cfg: Config, endpoints: dict[str, EndpointRuntime],
                 demo_personas: dict[str, str] | None = None) -> dict[str, Stage]:
    """Every stage the config turns on, by the stage name that work items carry."""
    def structured(name: str) -> bool:
        return cfg.endpoint(name).structured_output

    t2p = cfg.text_to_persona
    stages: dict[str, Stage] = {
        TextToPersona.name: TextToPersona(t2p, model=endpoints[t2p.endpoint].model,
                                          structured=structured(t2p.endpoint))}
    ex = cfg.expansion
    if ex.enabled and ex.max_depth > 0:
        stages[PersonaToPersona.name] = PersonaToPersona(ex, model=endpoints[ex.endpoint].model,
                                                         structured=structured(ex.endpoint))
    syn = cfg.synthesis
    if syn.enabled and syn.tasks:
        from engine.stages.synthesis import build_task_stages

        solver = syn.math.solver_endpoint or syn.endpoint
        stages.update(build_task_stages(syn, model=endpoints[syn.endpoint].model, endpoint=syn.endpoint,
                                        solver_model=endpoints[solver].model, solver_endpoint=solver,
                                        structured=structured(syn.endpoint), demo_personas=demo_personas or {}))
    return stages


def task_sinks(cfg: Config) -> tuple[str, ...]:
    """The output files the synthesis tasks write (one per task)."""
    syn = cfg.synthesis
    return tuple(syn.tasks) if syn.enabled else ()


class Spawner:
    """Turns each accepted persona into its expansion and synthesis work."""

    def __init__(self, cfg: Config, pipe: Pipeline) -> None:
        self.cfg = cfg
        self.pipe = pipe
        self.synthesised = 0
        self.expanded = 0  # expansion items spawned
        self.partner: dict[str, Any] | None = None  # the last persona synthesised, for dialogues
        restored = pipe.restored_extra.get("spawner")
        if isinstance(restored, dict):
            self.synthesised = int(restored.get("synthesised", 0))
            self.expanded = int(restored.get("expanded", 0))
            self.partner = restored.get("partner")
        pipe.on_accept.append(self.on_accept)
        pipe.extra_state["spawner"] = lambda: {"synthesised": self.synthesised, "expanded": self.expanded,
                                               "partner": self.partner}

    def _room_to_expand(self) -> bool:
        """Under `max_personas`, counting what expansions in flight may still add."""
        cap = self.cfg.expansion.max_personas
        if not cap:
            return True
        outstanding = self.expanded - self.pipe.counters[f"done.{PersonaToPersona.name}"]
        return self.pipe.counters["accepted"] + outstanding * self.cfg.expansion.relations < cap

    def on_accept(self, rec: Persona) -> list[WorkItem]:
        work: list[WorkItem] = []
        persona = msgspec.structs.asdict(rec)
        persona.pop("usage", None)
        ex = self.cfg.expansion
        if PersonaToPersona.name in self.pipe.stages and rec.depth < ex.max_depth and self._room_to_expand():
            self.expanded += 1
            work.append(PersonaToPersona.item(persona))
        syn = self.cfg.synthesis
        if syn.enabled and syn.tasks and not (syn.max_personas and self.synthesised >= syn.max_personas):
            from engine.stages.synthesis import task_item

            self.synthesised += 1
            for task in syn.tasks:
                work.append(task_item(task, persona, partner=self.partner))
            self.partner = {k: persona[k] for k in ("id", "persona")}
        return work
