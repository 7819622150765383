"""Reading a child's status: status.json first, the checkpoint's counters else; rates, ETA, the line."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.service import status


def test_prefers_status_json_and_falls_back_to_state_json(tmp_path: Path) -> None:
    ck = tmp_path / "checkpoint"
    assert status.read(tmp_path).source == ""
    ck.mkdir()
    (ck / "state.json").write_text(json.dumps({"counters": {"inputs_done": 3, "requests": 4}, "finished": True}))
    snap = status.read(tmp_path)
    assert snap.source == "state.json" and snap.counters["inputs_done"] == 3 and snap.state == "finished"
    assert snap.checkpoint_mtime is not None
    (ck / "status.json").write_text(json.dumps({
        "state": "running", "updated": 5.0, "elapsed": 2.0, "total": 10, "in_flight": 2,
        "counters": {"inputs_done": 4, "requests": 6}, "queue": {"ready": 1, "inputs": 3, "delayed": 0, "capacity": 8},
        "endpoints": {"fake": {"in_flight": 2}}, "latency_buckets": {"0.1": 3, "+Inf": 6}}))
    snap = status.read(tmp_path)
    assert snap.source == "status.json" and snap.total == 10 and snap.counters["inputs_done"] == 4
    assert snap.queue["inputs"] == 3 and snap.endpoints["fake"]["in_flight"] == 2 and snap.in_flight == 2
    (ck / "status.json").write_text("{not json")
    assert status.read(tmp_path).source == "state.json"  # a torn file is skipped, not fatal


def test_tracker_rates_eta_and_progress_line() -> None:
    t = status.Tracker()
    t0 = time.monotonic()
    for i in range(5):
        t.update(status.Snapshot(counters={"inputs_done": 10 * i, "requests": 20 * i, "prompt_tokens": 100 * i,
                                           "accepted": i}, updated=float(i), total=100, source="status.json"),
                 now=t0 + i)
    rps, tps, ips = t.rates()
    assert (round(rps), round(tps), round(ips)) == (20, 100, 10)
    assert round(t.eta() or 0) == 6  # 60 inputs left at 10/s
    assert t.line.startswith("inputs 40/100 | personas 4 | ") and "req/s" in t.line
    t.update(status.Snapshot(counters={"inputs_done": 40}, updated=4.0, total=100, source="status.json"), now=t0 + 9)
    assert round(t.rates()[0]) == 20  # the same reading again moves nothing
