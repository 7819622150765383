"""The creating request of every task in every prompting mode: persona, demonstrations, constraints."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from engine.config import Synthesis
from engine.errors import ConfigError
from engine.stages.synthesis import CREATE, build_task_stages, demo_key, demos_missing_personas, task_item
from engine.stages.synthesis.base import load_demos, pick

TASKS = list(CREATE)
MODES = ["zero_shot", "few_shot", "persona_enhanced"]


def _stages(cfg: Synthesis, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"model": "gen", "solver_model": "solver", "solver_endpoint": "strong", "endpoint": "ep",
                            "structured": True, "demo_personas": {}}
    return build_task_stages(cfg, **{**args, **kw})


def _cfg(mode: str, **tasks: dict[str, Any]) -> Synthesis:
    return msgspec.convert({"mode": mode, **tasks}, Synthesis)


def _demo_turns(req: Any) -> list[tuple[str, str]]:
    msgs = req.messages[1:-1]
    assert [m.role for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
    return [(u.content, a.content) for u, a in zip(msgs[::2], msgs[1::2], strict=True)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("task", TASKS)
def test_request_per_task_and_mode(task: str, mode: str, kit: SimpleNamespace) -> None:
    stage = _stages(_cfg(mode))[task]
    req = stage.request(task_item(task, kit.persona))
    assert req.messages[0].role == "system" and req.messages[-1].role == "user"
    last = req.messages[-1].content
    assert kit.persona["persona"] in last  # the persona is in every mode's request
    assert not any(kit.persona["persona"] in (m.content or "") for m in req.messages[:-1])
    for m in req.messages:
        for name in ("{persona}", "{constraints}", "{world}"):
            assert name not in (m.content or "")
    demos = load_demos(task, "", CREATE[task].keys)
    turns = _demo_turns(req)
    if mode == "zero_shot":
        assert turns == []
        return
    shown = pick(demos, kit.persona["id"], 2)
    assert len(turns) == 2 == len(shown)
    for (ask, answer), demo in zip(turns, shown, strict=True):
        assert json.loads(answer) == {k: demo.output[k] for k in CREATE[task].keys}  # the reply's own shape
        if mode == "persona_enhanced" and demo.persona:
            assert demo.persona in ask and "Persona:" in ask
        else:  # few-shot, or a demonstration without a persona: the plain request
            assert "Persona:" not in ask
            assert not any(d.persona and d.persona in ask for d in demos)


@pytest.mark.parametrize("task", TASKS)
def test_persona_enhanced_uses_derived_personas(task: str, kit: SimpleNamespace) -> None:
    cfg = _cfg("persona_enhanced", **{task: {"shots": 3}})
    missing = demos_missing_personas(cfg)
    demos = load_demos(task, "", CREATE[task].keys)
    lacking = [d for d in demos if d.persona is None]
    assert lacking and all(d.text in missing for d in lacking)
    derived = {demo_key(d.text): f"A derived persona number {i}." for i, d in enumerate(lacking)}
    req = _stages(cfg, demo_personas=derived)[task].request(task_item(task, kit.persona))
    asks = [ask for ask, _ in _demo_turns(req)]
    assert len(asks) == 3
    assert sum(a.startswith("Persona:") for a in asks) == 3  # every demonstration carries a persona
    for persona in derived.values():
        assert any(persona in a for a in asks)


def test_demos_missing_personas_only_for_persona_enhanced_tasks() -> None:
    assert demos_missing_personas(_cfg("few_shot")) == []
    cfg = _cfg("few_shot", math={"mode": "persona_enhanced"})
    texts = demos_missing_personas(cfg)
    assert len(texts) == 1 and "circular flower bed" in texts[0]
    assert demos_missing_personas(msgspec.convert({"tasks": ["logic"]}, Synthesis))[0].startswith("Ana, Ben")


def test_demonstrations_are_fixed_per_persona_and_rotate_across_personas(kit: SimpleNamespace) -> None:
    stage = _stages(_cfg("few_shot", knowledge={"shots": 1}))["knowledge"]
    first = stage.request(task_item("knowledge", kit.persona))
    again = stage.request(task_item("knowledge", dict(kit.persona)))
    assert first == again  # a resume sends the same prompt
    answers = {_demo_turns(stage.request(task_item("knowledge", {**kit.persona, "id": f"p-{i}"})))[0][1]
               for i in range(30)}
    assert len(answers) == 3  # every demonstration gets its turn


def test_math_constraints_are_rendered_and_recorded(kit: SimpleNamespace) -> None:
    cfg = _cfg("few_shot", math={"topic": "geometry", "level": "olympiad", "sub_questions": 3})
    stage = _stages(cfg)["math"]
    req = stage.request(task_item("math", kit.persona))
    last = req.messages[-1].content
    assert "geometry" in last and "olympiad" in last and "3 sub-questions" in last
    for ask, _ in _demo_turns(req):  # demonstrations do not carry this request's constraints
        assert "geometry" not in ask and "sub-questions" not in ask
    plain = _stages(_cfg("few_shot"))["math"].request(task_item("math", kit.persona)).messages[-1].content
    assert "geometry" not in plain and "sub-questions" not in plain and "level" not in plain
    out = stage.parse(task_item("math", kit.persona), kit.reply('{"problem": "A hive has 3 frames..."}'))
    assert out.follow[0].payload["constraints"] == {"topic": "geometry", "level": "olympiad", "sub_questions": 3}


def test_logic_trick_style(kit: SimpleNamespace) -> None:
    trick = _stages(_cfg("zero_shot", logic={"style": "trick"}))["logic"].request(task_item("logic", kit.persona))
    standard = _stages(_cfg("zero_shot"))["logic"].request(task_item("logic", kit.persona))
    assert "wordplay" in trick.messages[-1].content
    assert "wordplay" not in standard.messages[-1].content


def test_npc_world_in_system_prompt(tmp_path: Path, kit: SimpleNamespace) -> None:
    req = _stages(_cfg("zero_shot"))["npc"].request(task_item("npc", kit.persona))
    assert "The Tidewright Reach" in req.messages[0].content
    world = tmp_path / "moon.md"
    world.write_text("# Moonbase Vey\n\nA mining colony {with braces} under the lunar ice.\n")
    stage = _stages(_cfg("zero_shot", npc={"world": str(world)}))["npc"]
    req = stage.request(task_item("npc", kit.persona))
    assert "A mining colony {with braces}" in req.messages[0].content and "Tidewright" not in req.messages[0].content
    assert stage.world_title == "Moonbase Vey"


@pytest.mark.parametrize("structured", [True, False])
def test_structured_output(structured: bool, kit: SimpleNamespace) -> None:
    stages = _stages(_cfg("zero_shot"), structured=structured)
    for task in TASKS:
        rf = stages[task].request(task_item(task, kit.persona)).response_format
        if not structured:
            assert rf is None
            continue
        assert rf is not None and rf["type"] == "json_schema"
        schema = rf["json_schema"]["schema"]
        assert set(schema["required"]) == set(CREATE[task].keys)
        assert "maxLength" not in json.dumps(schema)  # length bounds make llama.cpp's grammar slow


def test_settings_reach_the_request(kit: SimpleNamespace) -> None:
    req = _stages(_cfg("zero_shot", logic={"max_tokens": 123, "temperature": 0.25}))["logic"].request(
        task_item("logic", kit.persona))
    assert (req.max_tokens, req.temperature, req.model) == (123, 0.25, "gen")


def test_template_and_demos_override(tmp_path: Path, kit: SimpleNamespace) -> None:
    tpl = tmp_path / "k.toml"
    tpl.write_text('system = "SYS"\nuser = "Be: {persona}{constraints} Q and A in JSON."\n'
                   '[demo]\nuser = "Q and A in JSON."\n')
    demos = tmp_path / "k.jsonl"
    demos.write_text(json.dumps({"persona": "A tea taster.", "output": {"question": "Q1?", "answer": "A1."}}) + "\n")
    cfg = _cfg("persona_enhanced", knowledge={"template": str(tpl), "demos": str(demos), "shots": 4})
    req = _stages(cfg)["knowledge"].request(task_item("knowledge", kit.persona))
    assert [m.content for m in req.messages] == [
        "SYS", "Be: A tea taster. Q and A in JSON.", '{"question": "Q1?", "answer": "A1."}',
        f"Be: {kit.persona['persona']} Q and A in JSON."]


def test_bad_overrides_fail_at_start(tmp_path: Path) -> None:
    tpl = tmp_path / "k.toml"
    tpl.write_text('system = "SYS"\nuser = "Be {persona}."\n')  # no [demo]
    with pytest.raises(ConfigError, match=r"\[demo\]"):
        _stages(_cfg("zero_shot", knowledge={"template": str(tpl)}))
    tpl.write_text('system = "SYS"\nuser = "Be {persona} in {city}."\n[demo]\nuser = "x"\n')
    with pytest.raises(ConfigError, match="city"):
        _stages(_cfg("zero_shot", knowledge={"template": str(tpl)}))
    demos = tmp_path / "d.jsonl"
    demos.write_text('{"output": {"question": "Q?"}}\n')
    with pytest.raises(ConfigError, match=r"d.jsonl:1: output lacks answer"):
        _stages(_cfg("few_shot", knowledge={"demos": str(demos)}))
    with pytest.raises(ConfigError, match="synthesis.npc.world"):
        _stages(_cfg("zero_shot", npc={"world": str(tmp_path / "missing.md")}))


def test_build_task_stages_names() -> None:
    assert set(_stages(_cfg("few_shot"))) == {
        "math", "math.solve", "logic", "instruction", "instruction.turn", "instruction.dialogue", "knowledge",
        "npc", "tool", "tool.implement"}
    stages = _stages(msgspec.convert({"tasks": ["math", "npc"]}, Synthesis))
    assert set(stages) == {"math", "math.solve", "npc"}
    assert (stages["math.solve"].endpoint, stages["math.solve"].model) == ("strong", "solver")
    assert (stages["math"].endpoint, stages["math"].model) == ("ep", "gen")
    for name, stage in stages.items():
        assert stage.name == name


def test_task_item(kit: SimpleNamespace) -> None:
    a = task_item("math", kit.persona)
    assert a.stage == "math" and a.key == task_item("math", dict(kit.persona)).key
    assert a.key != task_item("logic", kit.persona).key
    assert a.key != task_item("math", {**kit.persona, "id": "p-9"}).key
    assert a.payload["persona_id"] == "p-1" and a.payload["persona"] == kit.persona["persona"]
    assert a.payload["source_id"] == "src-1"  # dead letters trace back to the input
    assert "partner" not in task_item("math", kit.persona, partner=kit.partner).payload
    assert task_item("instruction", kit.persona, partner=kit.partner).payload["partner"] == kit.partner
    with pytest.raises(ValueError):
        task_item("poetry", kit.persona)
