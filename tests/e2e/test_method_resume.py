"""The whole method under kill -9: expansion and synthesis resume exactly, nothing done twice."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from engine.io.sinks import read_records
from engine.testing.fake_openai import run_in_thread
from engine.testing.scripted import MethodModel

TASKS = ["math", "logic", "instruction", "knowledge", "npc", "tool"]


def _run(base_url: str, inputs: Path, out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "engine", "run", str(inputs), "-o", str(out), "--progress", "off",
           "--base-url", base_url, "--model", "m", "--concurrency", "16", "--rpm", "3000",
           "--set", "run.checkpoint_interval=0.3", "--set", "expansion.max_depth=2", "--set", "expansion.relations=2",
           "--set", "synthesis.mode='few_shot'", "--set", "gate.window_seconds=0.2",
           "--set", "endpoints.default.backoff_base=0.01", "--set", "endpoints.default.backoff_max=0.05"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=out.parent)


@pytest.mark.slow
def test_kill_during_expansion_and_synthesis_then_resume(tmp_path: Path) -> None:
    inputs = tmp_path / "in.txt"
    inputs.write_text("".join(f"Text {i}: notes on topic {i * 31} for the weekly bulletin.\n" for i in range(20)))
    out = tmp_path / "out"
    rng = random.Random(11)
    kills = 0
    with run_in_thread(reply=MethodModel(), fault_rate=0.02, seed=5, fault_kinds=("500", "reset", "malformed")) as fake:
        while True:
            proc = _run(fake.base_url, inputs, out)
            if kills < 8:
                time.sleep(rng.uniform(2.0, 3.5))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()[-3000:]
            break
    assert kills >= 5, f"the run finished after {kills} kills"

    personas = read_records(out / "personas.jsonl.zst")
    rejected = read_records(out / "rejected.jsonl.zst")
    dead = read_records(out / "dead_letter.jsonl.zst")
    tasks = {t: read_records(out / f"{t}.jsonl.zst") for t in TASKS}
    for records in [personas, rejected, dead, *tasks.values()]:
        assert max(Counter(r["id"] for r in records).values(), default=1) == 1, "an id appears twice"
    ids = {p["id"] for p in personas}
    assert {p["depth"] for p in personas} == {0, 1, 2}
    # lineage: every expanded persona's parent and root were accepted
    for p in personas:
        if p["depth"]:
            assert p["parent_id"] in ids and p["root_id"] in ids and p["relation"] in ("colleague", "supplier")
    # every accepted persona below max_depth was expanded exactly once: at most 2 children (one reply's worth)
    children: dict[str, int] = defaultdict(int)
    for r in [*personas, *rejected]:
        if r.get("parent_id"):
            children[r["parent_id"]] += 1
    expanded_dead = {json.loads(d["payload"]).get("id") for d in dead if d["stage"] == "persona_to_persona"}
    for p in personas:
        if p["depth"] < 2 and p["id"] not in expanded_dead:
            assert children[p["id"]] in (1, 2), (p["id"], children[p["id"]])
    # every accepted persona synthesised exactly once per task (dead letters aside)
    dead_tasks = Counter((d["stage"].split(".")[0], json.loads(d["payload"]).get("persona_id")) for d in dead)
    for task, records in tasks.items():
        per = Counter(r["persona_id"] for r in records)
        assert max(per.values()) == 1, task
        missing = ids - set(per)
        assert all(dead_tasks[(task, m)] for m in missing), (task, len(missing))
        assert len(per) >= 0.8 * len(ids), (task, len(per), len(ids))
        assert all(r["mode"] == "few_shot" and r["persona"] for r in records)
    for r in tasks["math"]:  # MethodModel's solutions agree exactly when the number of boxes is even
        boxes = int(re.search(r"holds (\d+) boxes", r["problem"]).group(1))
        assert r["verified"] == (boxes % 2 == 0) and r["answer"] == (str(boxes * 12) if boxes % 2 == 0 else None)
