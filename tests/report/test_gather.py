"""Counts, rates and distributions over an output directory; partial files read cleanly."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from engine.io.sinks import ZstdJsonlSink
from engine.report.frames import FrameReader
from engine.report.gather import gather, reason_key

from .conftest import build


def test_personas_by_depth_and_relations(outdir: Path) -> None:
    r = gather(outdir)
    p = r["personas"]
    assert p["accepted"] == 12
    assert p["by_depth"] == {"0": 4, "1": 7, "2": 1}
    assert p["expanded"] == 8 and p["expanded_by_depth"] == {"1": 7, "2": 1}
    assert p["relations"][0] == {"relation": "colleague", "count": 4, "share": 0.5}
    assert {x["relation"]: x["count"] for x in p["relations"]} == {"colleague": 4, "student": 2, "sibling": 1,
                                                                   "mentor": 1}
    assert r["run"]["inputs_with_persona"] == 4


def test_gate_reject_rates(outdir: Path) -> None:
    g = gather(outdir)["gate"]
    assert (g["candidates"], g["rejected"], g["reject_rate"]) == (20, 8, 0.4)
    assert list(g["by_stage"]) == ["quality", "exact", "minhash", "semantic"]  # the gate's order
    assert g["by_stage"]["quality"] == {"count": 2, "rate": 0.1, "rate_of_reaching": 0.1}
    # semantic sees what quality, exact and minhash let through: 20 - 4 = 16
    assert g["by_stage"]["semantic"] == {"count": 4, "rate": 0.2, "rate_of_reaching": 0.25}
    assert g["by_stage"]["exact"]["rate_of_reaching"] == round(1 / 18, 4)
    assert g["by_reason"][0] == {"stage": "semantic", "reason": "similar", "count": 4, "rate": 0.2}
    assert {(x["stage"], x["reason"]): x["count"] for x in g["by_reason"]} == {
        ("semantic", "similar"): 4, ("quality", "too_short"): 2, ("exact", "duplicate"): 1,
        ("minhash", "near_duplicate"): 1}
    assert g["by_depth"]["0"] == {"candidates": 6, "rejected": 2, "reject_rate": round(2 / 6, 4)}
    assert g["by_depth"]["2"] == {"candidates": 3, "rejected": 2, "reject_rate": round(2 / 3, 4)}


def test_dead_letters_grouped_by_stage_and_reason(outdir: Path) -> None:
    d = gather(outdir)["dead_letters"]
    assert d["total"] == 4
    assert d["by_stage"] == {"persona_to_persona": 2, "text_to_persona": 1, "math.solve": 1}
    top = d["by_reason"][0]
    assert (top["stage"], top["reason"], top["count"]) == ("persona_to_persona", "unusable reply after 4 tries", 2)
    assert reason_key("gave up after 7 attempts: HTTP 500 from http://x") == "gave up after 7 attempts"


def test_tasks_by_mode_and_math_verified_share(outdir: Path) -> None:
    t = gather(outdir)["tasks"]
    assert list(t) == ["math", "instruction"]
    m = t["math"]
    assert m["records"] == 12 and m["personas"] == 12
    assert m["by_mode"] == {"persona_enhanced": 8, "zero_shot": 4}
    assert (m["verified"], m["verified_share"]) == (9, 0.75)
    assert m["dead_letters"] == 1  # the math.solve dead letter
    assert m["by_constraints"] == {"level=grade school": 12}
    i = t["instruction"]
    assert i["records"] == 13 and i["by_kind"] == {"instruction": 12, "dialogue": 1}
    assert "verified" not in i


def test_usage_by_model_and_unattributed(outdir: Path) -> None:
    u = gather(outdir)["usage"]
    assert u["by_model"]["m-big"] == {"prompt_tokens": 1200, "completion_tokens": 600, "records": 12}
    # 12 personas x (10, 5) + 13 instruction records x (20, 30)
    assert u["by_model"]["m-small"] == {"prompt_tokens": 380, "completion_tokens": 450, "records": 25}
    assert u["recorded"] == {"prompt_tokens": 1580, "completion_tokens": 1050}
    assert (u["requests"]["prompt_tokens"], u["requests"]["completion_tokens"]) == (2000, 1200)
    assert u["unattributed"] == {"prompt_tokens": 420, "completion_tokens": 150}


def test_newer_status_json_wins(outdir: Path) -> None:
    doc = {"state": "running", "updated": time.time(), "counters": {"prompt_tokens": 5000, "completion_tokens": 10}}
    (outdir / "checkpoint" / "status.json").write_text(json.dumps(doc))
    r = gather(outdir)
    assert r["run"]["state"] == "running" and r["run"]["checkpoint"] == "checkpoint/status.json"
    assert r["usage"]["requests"]["prompt_tokens"] == 5000
    assert r["usage"]["unattributed"]["completion_tokens"] == 0  # never negative


def _append_half_frame(path: Path, n: int) -> int:
    """Append one frame of n records (several zstd blocks) and cut it in the middle, as a crash would."""
    before = path.stat().st_size
    rng = random.Random(1)
    sink = ZstdJsonlSink(path, frame_bytes=1 << 30)
    for i in range(n):
        sink.write({"id": f"late{i}", "persona_id": "px", "persona": "A late persona.", "task": "math",
                    "mode": "zero_shot", "problem": "".join(rng.choice("abcdefgh ") for _ in range(120)),
                    "verified": True})
    sink.close()
    size = path.stat().st_size
    cut = before + (size - before) * 2 // 3
    os.truncate(path, cut)
    return cut - before


def test_half_written_last_frame_is_left_out(outdir: Path) -> None:
    math = outdir / "math.jsonl.zst"
    tail = _append_half_frame(math, 3000)
    reader = FrameReader(math)
    assert sum(1 for _ in reader) == 12  # the half frame's decodable prefix is not counted either
    assert reader.tail_bytes == tail and not reader.error
    r = gather(outdir)
    assert r["tasks"]["math"]["records"] == 12 and r["tasks"]["math"]["verified"] == 9
    assert r["files"]["math"]["partial_tail_bytes"] == tail
    assert r["files"]["personas"]["partial_tail_bytes"] == 0


def test_half_written_frame_in_every_file(outdir: Path) -> None:
    for name in ("personas", "rejected", "dead_letter", "instruction"):
        path = outdir / f"{name}.jsonl.zst"
        data = path.read_bytes()
        path.write_bytes(data + data[-40:-5])  # a frame's middle: no header, no end
    r = gather(outdir)
    assert r["personas"]["accepted"] == 12 and r["gate"]["rejected"] == 8 and r["dead_letters"]["total"] == 4
    assert r["tasks"]["instruction"]["records"] == 13


def test_plain_jsonl_without_trailing_newline(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\nnot json\n{"a": 2}\n{"a": 3')
    reader = FrameReader(p)
    assert [r["a"] for r in reader] == [1, 2]
    assert reader.bad_lines == 1 and reader.tail_bytes == len('{"a": 3')


def test_no_synthesis_files_and_no_checkpoint(tmp_path: Path) -> None:
    out = build(tmp_path / "out", tasks=False, checkpoint=False)
    r = gather(out)
    assert r["tasks"] == {"math": {"records": 0, "personas": 0, "by_mode": {}, "by_constraints": {},
                                   "dead_letters": 1}}  # known only from its dead letter
    assert r["run"]["state"] == "unknown"
    assert r["usage"]["requests"]["prompt_tokens"] == 0 and r["usage"]["unattributed"]["prompt_tokens"] == 0


def test_empty_and_missing_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ZstdJsonlSink(out / "personas.jsonl.zst").close()  # a run's first instant: one empty frame
    r = gather(out)
    assert r["personas"]["accepted"] == 0 and r["gate"]["reject_rate"] is None
    assert r["files"] == {"personas": {"records": 0, "partial_tail_bytes": 0, "bad_lines": 0}}


@pytest.mark.parametrize("usage, expected", [
    ({"prompt_tokens": 3, "completion_tokens": 4}, (3, 4)),
    ({"create": {"prompt_tokens": 3, "completion_tokens": 4}, "solve": {"prompt_tokens": 1}}, (4, 4)),
    (None, (0, 0)),
])
def test_usage_shapes(usage: object, expected: tuple[int, int]) -> None:
    from engine.report.gather import usage_of

    assert usage_of({"usage": usage}) == expected


def test_math_solutions_are_priced_as_the_solver(tmp_path: Path) -> None:
    """A math record's `solver_usage` goes to `solver_model`; the rest of its usage to `model`."""
    from engine.io.sinks import ZstdJsonlSink

    sink = ZstdJsonlSink(tmp_path / "math.jsonl.zst")
    base = {"persona_id": "p", "persona": "A nurse.", "task": "math", "mode": "zero_shot", "constraints": {},
            "problem": "1+1?", "solutions": ["2", "2", "2"], "answer": "2", "verified": True}
    sink.write({**base, "id": "a", "model": "writer", "solver_model": "solver",
                "usage": {"prompt_tokens": 400, "completion_tokens": 130, "total_tokens": 530},
                "solver_usage": {"prompt_tokens": 300, "completion_tokens": 120, "total_tokens": 420}})
    sink.write({**base, "id": "b", "model": "writer", "solver_model": "writer",  # one model: all of it
                "usage": {"prompt_tokens": 40, "completion_tokens": 13, "total_tokens": 53},
                "solver_usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}})
    sink.close()
    u = gather(tmp_path)["usage"]
    assert u["by_model"]["writer"] == {"prompt_tokens": 100 + 40, "completion_tokens": 10 + 13, "records": 2}
    assert u["by_model"]["solver"] == {"prompt_tokens": 300, "completion_tokens": 120, "records": 1}
    assert u["by_file"]["math"] == {"prompt_tokens": 440, "completion_tokens": 143, "records": 2}
    assert u["recorded"] == {"prompt_tokens": 440, "completion_tokens": 143}


def test_work_per_stage_from_the_counters(outdir: Path) -> None:
    counters = {"done.math": 12, "done.math.solve": 36, "dead.math.solve": 1, "done.text_to_persona": 6,
                "done.persona_to_persona": 4, "dead.persona_to_persona": 1, "dead": 2, "requests": 60}
    doc = {"state": "finished", "updated": time.time(), "counters": counters}
    (outdir / "checkpoint" / "status.json").write_text(json.dumps(doc))
    r = gather(outdir)
    assert r["run"]["stages"] == {"text_to_persona": {"done": 6, "dead": 0},
                                  "persona_to_persona": {"done": 4, "dead": 1},
                                  "math": {"done": 12, "dead": 0}, "math.solve": {"done": 36, "dead": 1}}
    assert list(r["run"]["stages"])[:2] == ["text_to_persona", "persona_to_persona"]  # pipeline order first
    from engine.report.render import render_text

    line = next(x for x in render_text(r).splitlines() if x.startswith("stages"))
    assert "text_to_persona 6 · persona_to_persona 4 (1 dead) · math 12 · math.solve 36 (1 dead)" in line


def test_a_compacted_file_is_read_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One big frame (a finished, compacted file) is passed on line by line, not held whole."""
    from engine.io.compact import compact_in_place
    from engine.io.sinks import ZstdJsonlSink
    from engine.report import frames

    monkeypatch.setattr(frames, "HOLD_LIMIT", 4096)
    monkeypatch.setattr(frames, "CHUNK", 512)  # compressed bytes per read
    path = tmp_path / "personas.jsonl.zst"
    sink = ZstdJsonlSink(path)
    for i in range(10000):
        sink.write({"id": f"{i:032x}", "persona": f"A keeper of lighthouse number {i} on the northern coast."})
    sink.close()
    compact_in_place(path)
    held: list[int] = []
    real_lines = frames.FrameReader._lines

    def spy(self: frames.FrameReader, data: bytes) -> Any:
        held.append(len(data))
        return real_lines(self, data)

    monkeypatch.setattr(frames.FrameReader, "_lines", spy)
    reader = frames.FrameReader(path)
    ids = [r["id"] for r in reader]
    assert ids == [f"{i:032x}" for i in range(10000)] and reader.tail_bytes == 0 and reader.bad_lines == 0
    # about 1.1 MB decoded, passed on in slices of a zstd block or two (128 kB each), never whole
    assert len(held) >= 5 and max(held) <= 3 * (128 << 10) and sum(held) > 1_000_000
