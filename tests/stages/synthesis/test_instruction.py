"""Instructions: the first prompt, the conversation chain (roles swapped for the persona) and dialogues."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from engine.config import Synthesis
from engine.errors import ReplyError
from engine.stages.synthesis import build_task_stages, task_item
from engine.stages.synthesis.instruction import InstructionRecord

FIRST = "How do I stop my bees swarming in May?"


def _stages(**instruction: Any) -> dict[str, Any]:
    cfg = msgspec.convert({"tasks": ["instruction"], "mode": "few_shot", "instruction": instruction}, Synthesis)
    return build_task_stages(cfg, model="gen", solver_model="gen", solver_endpoint="ep", endpoint="ep",
                             structured=False, demo_personas={})


def _model(item: Any, request: Any) -> str:
    """Answers by stage and by who speaks: numbered so the order can be checked."""
    n = len(item.payload.get("messages", []))
    if item.stage == "instruction":
        return json.dumps({"instruction": FIRST})
    if item.stage == "instruction.turn":
        return f"Assistant reply {n}" if item.payload["messages"][-1]["role"] == "user" else f"User: follow-up {n}"
    return f'"Line {n}"'


@pytest.mark.parametrize("reply", [json.dumps({"instruction": FIRST}), FIRST,
                                   f"```json\n{json.dumps({'prompt': FIRST})}\n```", json.dumps({"question": FIRST})])
def test_single_instruction(reply: str, kit: SimpleNamespace) -> None:
    out = _stages()["instruction"].parse(task_item("instruction", kit.persona), kit.reply(reply))
    assert out.follow == []
    [(sink, rec)] = out.records
    assert sink == "instruction" and isinstance(rec, InstructionRecord)
    assert rec.kind == "instruction" and rec.instruction == FIRST
    assert [(m.role, m.content) for m in rec.messages] == [("user", FIRST)]
    assert rec.partner_id is None and rec.mode == "few_shot" and rec.constraints == {}


@pytest.mark.parametrize("reply", ["", "   ", '{"instruction": ""}'])
def test_empty_instruction_is_a_reply_error(reply: str, kit: SimpleNamespace) -> None:
    with pytest.raises(ReplyError):
        _stages()["instruction"].parse(task_item("instruction", kit.persona), kit.reply(reply))


@pytest.mark.parametrize("turns", [1, 3])
def test_conversation_chain(turns: int, kit: SimpleNamespace) -> None:
    records, seen = kit.run_chain(_stages(turns=turns), task_item("instruction", kit.persona), _model)
    assert [i.stage for i in seen] == ["instruction"] + ["instruction.turn"] * (1 + 2 * turns)
    [(_, rec)] = records
    assert rec.kind == "conversation" and rec.instruction == FIRST
    roles = [m.role for m in rec.messages]
    assert len(roles) == 2 + 2 * turns
    assert roles == ["user", "assistant"] * (turns + 1)  # the assistant has the last word
    contents = [m.content for m in rec.messages]
    assert contents[0] == FIRST
    for i in range(1, len(contents)):
        assert contents[i] == (f"Assistant reply {i}" if i % 2 else f"follow-up {i}")  # role label stripped
    assert rec.usage.total_tokens == 15 * (2 + 2 * turns)


def test_turn_requests_swap_roles_for_the_persona(kit: SimpleNamespace) -> None:
    stages = _stages(turns=2)
    msgs = [{"role": "user", "content": FIRST}, {"role": "assistant", "content": "Add a super."}]
    first = stages["instruction"].parse(task_item("instruction", kit.persona), kit.reply(FIRST)).follow[0]
    assistant_req = stages["instruction.turn"].request(first)
    assert [(m.role, m.content) for m in assistant_req.messages[1:]] == [("user", FIRST)]
    assert "assistant" in assistant_req.messages[0].content and kit.persona["persona"] not in \
        assistant_req.messages[0].content
    item = stages["instruction.turn"].item(first.payload["chain"], {**first.payload, "messages": msgs})
    req = stages["instruction.turn"].request(item)
    assert kit.persona["persona"] in req.messages[0].content  # the model plays the persona
    assert [m.role for m in req.messages] == ["system", "assistant", "user"]
    assert req.messages[1].content == FIRST and "Add a super." in req.messages[2].content


def test_dialogue_chain(kit: SimpleNamespace) -> None:
    stages = _stages(dialogue=True, dialogue_turns=4)
    item = task_item("instruction", kit.persona, partner=kit.partner)
    records, seen = kit.run_chain(stages, item, _model)
    assert [i.stage for i in seen] == ["instruction"] + ["instruction.dialogue"] * 4
    kinds = {rec.kind: rec for _, rec in records}
    assert set(kinds) == {"instruction", "dialogue"}
    d = kinds["dialogue"]
    assert [m.role for m in d.messages] == ["persona", "partner", "persona", "partner"]
    assert [m.content for m in d.messages] == ["Line 0", "Line 1", "Line 2", "Line 3"]  # quotes stripped
    assert d.partner_id == "p-2" and d.partner == kit.partner["persona"] and d.persona_id == "p-1"
    assert d.mode == "zero_shot" and d.instruction == "Line 0"
    assert d.usage.total_tokens == 4 * 15  # its own requests only
    assert d.id != kinds["instruction"].id


def test_dialogue_requests_alternate_speakers(kit: SimpleNamespace) -> None:
    stages = _stages(dialogue=True, dialogue_turns=3)
    out = stages["instruction"].parse(task_item("instruction", kit.persona, partner=kit.partner), kit.reply(FIRST))
    [d0] = [f for f in out.follow if f.stage == "instruction.dialogue"]
    dlg = stages["instruction.dialogue"]
    r0 = dlg.request(d0)
    assert r0.messages[0].content.index(kit.persona["persona"]) < r0.messages[0].content.index(
        kit.partner["persona"])  # the persona speaks to the partner
    assert [m.role for m in r0.messages] == ["system", "user"]
    d1 = dlg.parse(d0, kit.reply("Hello, about my stall.")).follow[0]
    r1 = dlg.request(d1)
    assert r1.messages[0].content.startswith(f"You are this person: {kit.partner['persona']}")
    assert [(m.role, m.content) for m in r1.messages[1:]] == [("user", "Hello, about my stall.")]
    d2 = dlg.parse(d1, kit.reply("Sure, which week?")).follow[0]
    r2 = dlg.request(d2)
    assert [m.role for m in r2.messages] == ["system", "user", "assistant", "user"]
    assert r2.messages[2].content == "Hello, about my stall." and r2.messages[3].content == "Sure, which week?"


def test_no_dialogue_without_partner(kit: SimpleNamespace) -> None:
    stages = _stages(dialogue=True)
    out = stages["instruction"].parse(task_item("instruction", kit.persona), kit.reply(FIRST))
    assert out.follow == [] and len(out.records) == 1
    same = task_item("instruction", kit.persona, partner={"id": "p-1", "persona": "x"})
    assert stages["instruction"].parse(same, kit.reply(FIRST)).follow == []


def test_empty_turn_is_a_reply_error(kit: SimpleNamespace) -> None:
    stages = _stages(turns=1)
    first = stages["instruction"].parse(task_item("instruction", kit.persona), kit.reply(FIRST)).follow[0]
    with pytest.raises(ReplyError):
        stages["instruction.turn"].parse(first, kit.reply("Assistant:  "))
