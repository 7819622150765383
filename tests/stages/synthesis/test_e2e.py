"""Every task in every mode end to end through a real HTTP endpoint: a FakeOpenAI with scripted replies.

Each stage's request goes out through EndpointClient; the fake picks its reply by the prompt;
the reply goes to the stage's parse, and follow-ups (through checkpoint JSON) until a record.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from engine.config import Synthesis
from engine.stages.synthesis import build_task_stages, task_item
from engine.testing.fake_openai import FakeOpenAI, run_in_thread
from engine.testing.scripted import MethodModel

SOLUTIONS = [r"36 x 2.5 = 90. Answer: \boxed{90}", "So 90 kg.\nAnswer: 90 kg", r"\boxed{85}"]


class Script(MethodModel):
    """MethodModel's replies, but the three SOLUTIONS in turn for math; notes each request body."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []
        self.solves = itertools.count()

    def __call__(self, body: dict[str, Any]) -> str:
        with self.lock:
            self.bodies.append(body)
        system = body["messages"][0]["content"]
        if "You write math problems" in system:
            return '{"problem": "3 hives hold 12 frames each, 2.5 kg per frame. How many kg?"}'
        if "You solve math problems" in system:
            return SOLUTIONS[next(self.solves) % 3]
        return super().__call__(body)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, Script]]:
    script = Script()
    with run_in_thread(reply=script) as f:
        yield f, script


def _stages(mode: str) -> dict[str, Any]:
    cfg = msgspec.convert({"mode": mode, "instruction": {"turns": 1, "dialogue": True, "dialogue_turns": 2}},
                          Synthesis)
    return build_task_stages(cfg, model="gen", solver_model="solver", solver_endpoint="ep", endpoint="ep",
                             structured=True, demo_personas={})


EXPECT = {"math": ["math", "math.solve", "math.solve", "math.solve"], "logic": ["logic"],
          "instruction": ["instruction", "instruction.turn", "instruction.dialogue", "instruction.turn",
                          "instruction.dialogue", "instruction.turn"],
          "knowledge": ["knowledge"], "npc": ["npc"], "tool": ["tool", "tool.implement"]}


@pytest.mark.parametrize("mode", ["zero_shot", "few_shot", "persona_enhanced"])
@pytest.mark.parametrize("task", list(EXPECT))
def test_task_end_to_end(task: str, mode: str, fake: tuple[FakeOpenAI, Script], kit: SimpleNamespace,
                         tmp_path: Path) -> None:
    server, script = fake
    before = len(script.bodies)
    script.solves = itertools.count()  # each math chain sees the three SOLUTIONS in order
    records, seen = kit.run_http(_stages(mode), task_item(task, kit.persona, partner=kit.partner), server.base_url)
    assert [i.stage for i in seen] == EXPECT[task]
    bodies = script.bodies[before:]
    assert len(bodies) == len(seen)
    assert kit.persona["persona"] in json.dumps(bodies[0])
    n_demo = len(bodies[0]["messages"]) - 2
    assert n_demo == (0 if mode == "zero_shot" else 4)  # 2 shots = 4 turns
    assert bodies[0]["response_format"]["type"] == "json_schema"
    assert {sink for sink, _ in records} == {task}
    for _, rec in records:
        assert rec.persona_id == "p-1" and rec.task == task and rec.usage.total_tokens > 0
        assert rec.model == "gen"  # the fake echoes the requested model
        assert rec.mode == ("zero_shot" if getattr(rec, "kind", "") == "dialogue" else mode)
    recs = {getattr(r, "kind", task): r for _, r in records}
    if task == "math":
        assert recs["math"].verified and recs["math"].answer == "90" and recs["math"].solver_model == "solver"
    elif task == "instruction":
        assert set(recs) == {"conversation", "dialogue"}
        assert [m.role for m in recs["conversation"].messages] == ["user", "assistant", "user", "assistant"]
        assert [m.role for m in recs["dialogue"].messages] == ["persona", "partner"]
    elif task == "tool":
        assert recs["tool"].implementation.startswith("def count_frames")
    # the records load as one table, as datasets.load_dataset("json") would read them
    pa_json = pytest.importorskip("pyarrow.json")
    path = tmp_path / f"{task}.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for _, r in records))
    table = pa_json.read_json(path)
    assert table.num_rows == len(records)
    assert table.column_names[:9] == ["id", "persona_id", "persona", "task", "mode", "constraints", "model", "usage",
                                      "created_at"]
