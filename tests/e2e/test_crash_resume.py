"""kill -9 at random moments, resume each time: nothing lost, nothing written twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from engine.io.sinks import read_records
from engine.testing.fake_openai import Fault, run_in_thread

N_INPUTS = 1500


JOBS = ("nurse", "welder", "violinist", "beekeeper", "actuary", "glassblower", "midwife", "surveyor", "cartographer",
        "sommelier", "locksmith", "paramedic", "archivist", "falconer", "stonemason", "botanist", "chef", "pilot")
TOPICS = ("medieval siege engines", "tidal energy", "jazz harmony", "urban foraging", "chess endgames",
          "volcanic soils", "sourdough chemistry", "bird migration", "tax law", "retro video games",
          "knot tying", "solar eclipses", "sign language", "antique clocks", "marathon training")


def _reply(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "garbled" in prompt:
        return "this is not JSON at all"
    i = int(prompt[prompt.index("item-") + 5:][:6])
    if i % 10 == 9:
        i -= 9  # a planted duplicate of an earlier item's persona
    job, topic = JOBS[i % len(JOBS)], TOPICS[(i // len(JOBS)) % len(TOPICS)]
    return json.dumps({"persona": f"A {job} who spends weekends reading about {topic}."})


def _faults(n: int, body: dict) -> Fault | None:
    prompt = body["messages"][-1]["content"]
    if "poison" in prompt:
        return Fault("400")
    return None


def _write_inputs(path: Path) -> set[str]:
    ids = set()
    with path.open("w") as fh:
        for i in range(N_INPUTS):
            kind = "poison" if i % 97 == 5 else "garbled" if i % 89 == 7 else "plain"
            rid = f"in-{i:05d}"
            ids.add(rid)
            fh.write(json.dumps({"id": rid, "text": f"item-{i:06d} {kind} text about things"}) + "\n")
    return ids


def _run(base_url: str, inputs: Path, out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "engine", "run", str(inputs), "-o", str(out), "--progress", "off", "--no-report",
           "--base-url", base_url, "--model", "m", "--concurrency", "32", "--rpm", "2400",
           "--set", "run.checkpoint_interval=0.25", "--set", "text_to_persona.parse_retries=1",
           "--set", "expansion.enabled=false", "--set", "synthesis.enabled=false",
           "--set", "endpoints.default.backoff_base=0.01", "--set", "endpoints.default.backoff_max=0.05"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=out.parent)


@pytest.mark.slow
def test_sigkill_twenty_times_then_resume(tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    expected = _write_inputs(inputs)
    out = tmp_path / "out"
    rng = random.Random(7)
    kills = 0
    with run_in_thread(reply=_reply, faults=_faults, fault_rate=0.03, seed=3,
                       fault_kinds=("500", "503", "reset", "malformed", "truncated")) as fake:
        while True:
            proc = _run(fake.base_url, inputs, out)
            if kills < 20:
                time.sleep(rng.uniform(0.6, 1.6))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, stderr.decode()
            break
    assert kills >= 20, f"the run finished after only {kills} kills; make it longer"

    personas = read_records(out / "personas.jsonl.zst")
    rejected = read_records(out / "rejected.jsonl.zst")
    dead = read_records(out / "dead_letter.jsonl.zst")
    for name in ("personas", "rejected", "dead_letter"):
        # every file decompresses with the zstd tool too
        subprocess.run(["zstd", "-dcq", str(out / f"{name}.jsonl.zst")], check=True, stdout=subprocess.DEVNULL)
    for records in (personas, rejected, dead):
        ids = Counter(r["id"] for r in records)
        assert not [i for i, n in ids.items() if n > 1], "an id appears twice"
    fates = Counter(r["source_id"] for r in personas if r["depth"] == 0)
    fates.update(r["source_id"] for r in rejected if r["depth"] == 0)
    fates.update(r["source_id"] for r in dead)
    assert set(fates) == expected, (len(set(fates)), len(expected))
    assert all(n == 1 for n in fates.values()), [k for k, n in fates.items() if n > 1][:5]
    assert dead, "the poisoned and garbled inputs must be dead-lettered"
    assert all(d["reason"] for d in dead)
    assert {d["source_id"] for d in dead} == {f"in-{i:05d}" for i in range(N_INPUTS) if i % 97 == 5 or i % 89 == 7}
    assert any("HTTP 400" in d["reason"] for d in dead) and any("unusable reply" in d["reason"] for d in dead)
    assert any(d["raw"] == "this is not JSON at all" for d in dead)
    _no_two_accepted_above_thresholds([p["persona"] for p in personas])
    assert rejected and "exact" in {r["stage"] for r in rejected}
    assert all(r["duplicate_of"] in {p["id"] for p in personas} for r in rejected if r["duplicate_of"])


def _no_two_accepted_above_thresholds(texts: list[str]) -> None:
    """The gate's promise survives the kills: Jaccard and cosine below 0.9 for every kept pair."""
    import re

    import numpy as np

    from engine.dedup.embedder import Embedder

    sets = [set(re.findall(r"\w+", t.casefold())) for t in texts]
    for i in range(len(sets)):
        for j in range(i):
            inter = len(sets[i] & sets[j])
            assert inter / len(sets[i] | sets[j]) < 0.9, (texts[i], texts[j])
    vecs = Embedder().embed(texts)
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, 0)
    # f16 storage moves cosines by ~1e-3; allow that much
    assert sims.max() < 0.9 + 2e-3, float(sims.max())
