"""Math: the problem, the chain of k solutions carried in payloads, and the vote on their answers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from engine.config import MathTask, Synthesis
from engine.errors import ReplyError
from engine.stages.synthesis import build_task_stages, task_item
from engine.stages.synthesis.maths import MathRecord

PROBLEM = "A beekeeper has 3 hives with 12 frames each and harvests 2.5 kg of honey per frame. How many kg in all?"
PROBLEM_JSON = json.dumps({"problem": PROBLEM})


def _stages(**math: Any) -> dict[str, Any]:
    cfg = msgspec.convert({"tasks": ["math"], "mode": "zero_shot", "math": math}, Synthesis)
    return build_task_stages(cfg, model="gen", solver_model="solver", solver_endpoint="strong", endpoint="ep",
                             structured=True, demo_personas={})


def _solve(solutions: list[str]) -> Any:
    """A scripted model: the problem first, then the given solutions in order."""
    it = iter(solutions)

    def answer(item: Any, request: Any) -> str:
        if item.stage == "math":
            return PROBLEM_JSON
        assert PROBLEM in request.messages[-1].content
        return next(it)
    return answer


def test_problem_queues_the_first_solution(kit: SimpleNamespace) -> None:
    stages = _stages()
    out = stages["math"].parse(task_item("math", kit.persona), kit.reply(PROBLEM_JSON))
    assert out.records == [] and len(out.follow) == 1
    f = out.follow[0]
    assert f.stage == "math.solve" and f.payload["problem"] == PROBLEM and f.payload["solutions"] == []
    assert f.payload["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert f.payload["mode"] == "zero_shot" and f.payload["model"] == "served"


@pytest.mark.parametrize("reply", ["no json at all", '{"problem": ""}', '{"other": "x"}'])
def test_problem_reply_errors(reply: str, kit: SimpleNamespace) -> None:
    with pytest.raises(ReplyError):
        _stages()["math"].parse(task_item("math", kit.persona), kit.reply(reply))


def test_two_of_three_agree(kit: SimpleNamespace) -> None:
    records, seen = kit.run_chain(_stages(), task_item("math", kit.persona), _solve([
        r"3 x 12 = 36 frames, 36 x 2.5 = 90. Answer: \boxed{90}",
        "36 frames times 2.5 kg is 90 kg.\nAnswer: 90 kg",
        r"I get \boxed{85}",
    ]))
    assert [i.stage for i in seen] == ["math", "math.solve", "math.solve", "math.solve"]
    assert len({i.key for i in seen}) == 4
    [(sink, rec)] = records
    assert sink == "math" and isinstance(rec, MathRecord)
    assert rec.verified and rec.answer == "90" and rec.agreement == 2 and rec.required == 2
    assert rec.extracted == ["90", "90 kg", "85"] and rec.answers == ["90", "90", "85"]
    assert [(v.answer, v.count) for v in rec.votes] == [("90", 2), ("85", 1)]
    assert rec.problem == PROBLEM and len(rec.solutions) == 3
    assert rec.usage.total_tokens == 4 * 15  # the problem and three solutions
    assert rec.solver_usage is not None and rec.solver_usage.total_tokens == 3 * 15  # the solutions' share
    assert (rec.task, rec.persona_id, rec.persona, rec.mode) == ("math", "p-1", kit.persona["persona"], "zero_shot")
    assert rec.constraints == {"topic": "", "level": "", "sub_questions": 0}
    assert rec.model == "served" and rec.solver_model == "served"
    doc = msgspec.json.decode(msgspec.json.encode(rec))
    assert list(doc)[:9] == ["id", "persona_id", "persona", "task", "mode", "constraints", "model", "usage",
                             "created_at"]


def test_all_differ_is_unverified(kit: SimpleNamespace) -> None:
    records, _ = kit.run_chain(_stages(), task_item("math", kit.persona),
                               _solve([r"\boxed{1}", r"\boxed{2}", "no idea"]))
    rec = records[0][1]
    assert not rec.verified and rec.answer is None and rec.answers == ["1", "2", None]


def test_k5_m3(kit: SimpleNamespace) -> None:
    stages = _stages(solutions=5, agree=3)
    sols = [r"\boxed{3/4}", "Answer: 0.75", r"\boxed{75\%}", r"\boxed{1}", r"\boxed{\frac{3}{4}}"]
    records, seen = kit.run_chain(stages, task_item("math", kit.persona), _solve(sols))
    assert len(seen) == 6
    rec = records[0][1]
    assert rec.verified and rec.answer == "0.75" and rec.agreement == 4 and len(rec.solutions) == 5
    records, _ = kit.run_chain(stages, task_item("math", kit.persona), _solve(
        [r"\boxed{1}", r"\boxed{1}", r"\boxed{2}", r"\boxed{2}", r"\boxed{3}"]))
    assert not records[0][1].verified


def test_solve_request(kit: SimpleNamespace) -> None:
    stages = _stages(temperature=0.0, solver_max_tokens=321)
    out = stages["math"].parse(task_item("math", kit.persona), kit.reply(PROBLEM_JSON))
    req = stages["math.solve"].request(out.follow[0])
    assert req.model == "solver" and req.max_tokens == 321
    assert req.temperature and req.temperature > 0  # independent solutions must be able to differ
    assert PROBLEM in req.messages[-1].content and r"\boxed{" in req.messages[-1].content
    assert req.response_format is None
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "user"]  # the template's example


def test_chain_keys_are_stable_and_distinct(kit: SimpleNamespace) -> None:
    sols = [r"\boxed{90}"] * 3
    a = kit.run_chain(_stages(), task_item("math", kit.persona), _solve(sols))
    b = kit.run_chain(_stages(), task_item("math", kit.persona), _solve(sols))
    assert [i.key for i in a[1]] == [i.key for i in b[1]]
    assert a[0][0][1].id == b[0][0][1].id  # same content, same id
    other = kit.run_chain(_stages(), task_item("math", {**kit.persona, "id": "p-2"}), _solve(sols))
    assert other[0][0][1].id != a[0][0][1].id


def test_empty_solution_is_a_reply_error(kit: SimpleNamespace) -> None:
    stages = _stages()
    out = stages["math"].parse(task_item("math", kit.persona), kit.reply(PROBLEM_JSON))
    with pytest.raises(ReplyError):
        stages["math.solve"].parse(out.follow[0], kit.reply("   "))


def test_agree_above_solutions_is_a_config_error() -> None:
    with pytest.raises(ValueError):
        MathTask(solutions=2, agree=3)


def test_sub_questions_are_voted_on_part_by_part(kit: SimpleNamespace) -> None:
    """With sub-questions, solutions agree only when every part's boxed answer agrees."""
    seen_requests: list[Any] = []
    solutions = iter([
        "(a) 36 frames: \\boxed{36}\n(b) 90 kg: \\boxed{90}",
        "Part (a): \\boxed{36 frames}. Part (b): \\boxed{90.0}",
        "(a) \\boxed{12}\n(b) \\boxed{90}",  # agrees on (b) only
    ])

    def answer(item: Any, request: Any) -> str:
        if item.stage == "math":
            return PROBLEM_JSON
        seen_requests.append(request)
        return next(solutions)

    records, _ = kit.run_chain(_stages(sub_questions=2), task_item("math", kit.persona), answer)
    [(_, rec)] = records
    assert rec.extracted == ["36; 90", "36 frames; 90.0", "12; 90"]
    assert rec.answers == ["36; 90", "36; 90", "12; 90"]
    assert rec.verified and rec.answer == "36; 90" and rec.agreement == 2
    assert all("2 parts" in r.messages[-1].content and "\\boxed{}" in r.messages[-1].content for r in seen_requests)


def test_a_solution_missing_a_part_has_no_answer(kit: SimpleNamespace) -> None:
    records, _ = kit.run_chain(_stages(sub_questions=3), task_item("math", kit.persona), _solve(
        ["\\boxed{1} \\boxed{2} \\boxed{3}", "\\boxed{2} \\boxed{3}", "\\boxed{0} \\boxed{1} \\boxed{2} \\boxed{3}"]))
    [(_, rec)] = records
    assert rec.extracted == ["1; 2; 3", None, "1; 2; 3"]  # the last three boxed answers of the third
    assert rec.verified and rec.answer == "1; 2; 3"


def test_single_question_requests_carry_no_parts_note(kit: SimpleNamespace) -> None:
    item = _stages()["math"].parse(task_item("math", kit.persona), kit.reply(PROBLEM_JSON)).follow[0]
    assert "parts" not in _stages()["math.solve"].request(item).messages[-1].content


def test_a_broken_parts_note_is_a_config_error_at_start(tmp_path: Path) -> None:
    from engine.errors import ConfigError

    default = Path(__file__).resolve().parents[3] / "engine" / "prompts" / "tasks" / "math_solve.toml"
    text = default.read_text().split("[parts]")[0] + "[parts]\nnote = ' Put each answer in \\boxed{}.'\n"
    path = tmp_path / "solve.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"\[parts\]\.note"):
        _stages(solve_template=str(path))
    # without a [parts] table the built-in note is used
    (tmp_path / "plain.toml").write_text(default.read_text().split("[parts]")[0])
    item = _stages(sub_questions=3, solve_template=str(tmp_path / "plain.toml"))["math"].parse(
        task_item("math", {"id": "p", "persona": "A ferry pilot.", "source_id": "s", "depth": 0}),
        SimpleNamespace(content=PROBLEM_JSON, model="m", usage=None)).follow[0]
    assert "3 parts" in _stages(sub_questions=3, solve_template=str(tmp_path / "plain.toml"))["math.solve"].request(
        item).messages[-1].content
