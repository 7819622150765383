"""Logic, knowledge and NPC replies: the records they make and the replies they refuse."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from engine.config import Synthesis
from engine.errors import ReplyError
from engine.stages.synthesis import build_task_stages, task_item

NPC = {"name": "Brannoc Hale", "role": "Hive-keeper of the Cinder Key springs",
       "background": "Keeps coral bees.", "personality": "Patient,\nwry.", "interaction": "Trades honey for tide news."}


def _stage(task: str, mode: str = "few_shot", **settings: Any) -> Any:
    cfg = msgspec.convert({"tasks": [task], "mode": mode, task: settings}, Synthesis)
    return build_task_stages(cfg, model="gen", solver_model="gen", solver_endpoint="ep", endpoint="ep",
                             structured=True, demo_personas={})[task]


def _parse(stage: Any, kit: SimpleNamespace, reply: str) -> Any:
    out = stage.parse(task_item(stage.name, kit.persona), kit.reply(reply, model="served-7"))
    assert out.follow == []
    [(sink, rec)] = out.records
    assert sink == stage.name
    assert (rec.persona_id, rec.persona, rec.task, rec.model) == ("p-1", kit.persona["persona"], stage.name,
                                                                  "served-7")
    assert rec.usage.total_tokens == 15 and rec.created_at.endswith("Z")
    return rec


def test_logic_record(kit: SimpleNamespace) -> None:
    rec = _parse(_stage("logic", style="trick"), kit,
                 'Sure!\n```json\n{"puzzle": "Which frame is heaviest?", "answer": "The one full of honey."}\n```')
    assert rec.puzzle == "Which frame is heaviest?" and rec.answer == "The one full of honey."
    assert rec.constraints == {"style": "trick"} and rec.mode == "few_shot"


def test_logic_accepts_aliases(kit: SimpleNamespace) -> None:
    rec = _parse(_stage("logic"), kit, '{"question": "Q?", "solution": "S."}')
    assert (rec.puzzle, rec.answer) == ("Q?", "S.")


def test_knowledge_record(kit: SimpleNamespace) -> None:
    answer = "Bees swarm when the colony outgrows its hive.\n\nGive them room early."
    rec = _parse(_stage("knowledge", "persona_enhanced"), kit,
                 json.dumps({"question": "Why do bees swarm?", "answer": answer}))
    assert rec.question == "Why do bees swarm?" and rec.answer == answer  # paragraphs kept
    assert rec.constraints == {} and rec.mode == "persona_enhanced"


def test_npc_record(kit: SimpleNamespace) -> None:
    rec = _parse(_stage("npc", "zero_shot"), kit, json.dumps(NPC))
    assert rec.world == "The Tidewright Reach"
    assert {k: getattr(rec, k) for k in NPC} == NPC


def test_record_ids_hash_content(kit: SimpleNamespace) -> None:
    stage = _stage("knowledge")
    a = _parse(stage, kit, json.dumps({"question": "Q1?", "answer": "A."}))
    b = _parse(stage, kit, json.dumps({"question": "Q1?", "answer": "A."}))
    c = _parse(stage, kit, json.dumps({"question": "Q2?", "answer": "A."}))
    assert a.id == b.id != c.id and len(a.id) == 32


@pytest.mark.parametrize(("task", "reply"), [
    ("logic", "A puzzle: which frame is heaviest?"),  # no JSON
    ("logic", '{"puzzle": "Q?"}'),  # no answer
    ("knowledge", '{"question": "Q?", "answer": 42}'),
    ("npc", json.dumps({k: v for k, v in NPC.items() if k != "interaction"})),
    ("npc", json.dumps({**NPC, "name": "   "})),
])
def test_invalid_replies(task: str, reply: str, kit: SimpleNamespace) -> None:
    with pytest.raises(ReplyError) as e:
        _stage(task).parse(task_item(task, kit.persona), kit.reply(reply))
    assert e.value.raw == reply
