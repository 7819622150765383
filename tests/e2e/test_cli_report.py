"""`persona run` without --no-report: the run's summary, then the report (text, report.json, PNG plots).

The whole method runs in a subprocess against a fake server answering with MethodModel, except that
every expansion also names the same neighbour, so the gate has exact duplicates to reject. The report's
numbers are checked against the records in the output files, counted here independently.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.io.sinks import ZstdJsonlSink, read_records
from engine.report import render_text, write_report
from engine.testing.fake_openai import run_in_thread
from engine.testing.scripted import MethodModel

TASKS = ("math", "logic", "instruction", "knowledge", "npc", "tool")
PLOTS = ("report_depth.png", "report_rejects.png", "report_diversity.png")
PNG = b"\x89PNG\r\n\x1a\n"
NEIGHBOUR = "A retired postman who tends roses along the harbour wall."
PRICE = (2.0, 8.0)  # USD per million prompt / completion tokens of model "m"


class WithNeighbour:
    """MethodModel, but each expansion's second relative is always the same neighbour."""

    def __init__(self) -> None:
        self.model = MethodModel()

    def __call__(self, body: dict[str, Any]) -> str:
        answer = self.model(body)
        if "close to a given person" in body["messages"][0]["content"]:
            doc = json.loads(answer)
            doc["relations"][1] = {"relation": "neighbour", "persona": NEIGHBOUR}
            answer = json.dumps(doc)
        return answer


def _usd(prompt: int, completion: int) -> float:
    return (prompt * PRICE[0] + completion * PRICE[1]) / 1e6


def test_run_prints_and_writes_the_report(tmp_path: Path) -> None:
    inputs = tmp_path / "in.txt"
    inputs.write_text("".join(f"Parish newsletter {i}: the bell-ringing rota for week {i * 5}.\n" for i in range(3)))
    out = tmp_path / "out"
    with run_in_thread(reply=WithNeighbour()) as fake:
        cmd = [sys.executable, "-m", "engine", "run", str(inputs), "-o", str(out), "--progress", "off",
               "--base-url", fake.base_url, "--model", "m",
               "--set", "run.checkpoint_interval=0.5", "--set", "gate.window_seconds=0.2",
               "--set", "gate.semantic.enabled=false", "--set", "expansion.max_depth=1",
               "--set", "expansion.relations=2", "--set", f"prices.m.prompt={PRICE[0]}",
               "--set", f"prices.m.completion={PRICE[1]}"]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    stdout = r.stdout

    personas = read_records(out / "personas.jsonl.zst")
    rejected = read_records(out / "rejected.jsonl.zst")
    dead = read_records(out / "dead_letter.jsonl.zst")
    tasks = {t: read_records(out / f"{t}.jsonl.zst") for t in TASKS}
    depth = Counter(p["depth"] for p in personas)
    assert depth[0] == 3 and depth[1] >= 3 and sum(p["persona"] == NEIGHBOUR for p in personas) == 1
    # the neighbour comes back with every expansion; MethodModel's own personas may repeat too (by chance)
    assert any(x["persona"] == NEIGHBOUR for x in rejected) and all(x["stage"] == "exact" for x in rejected)
    assert dead == []

    # the run's own summary, then the report
    assert "status      finished" in stdout and f"output      {out}/" in stdout
    assert "run         finished" in stdout
    dist = " · ".join(f"d{d} {depth[d]}" for d in sorted(depth))
    assert f"personas    {len(personas)} accepted ({dist})" in stdout
    candidates = len(personas) + len(rejected)
    assert f"gate        {candidates} candidates, {len(rejected)} rejected" in stdout
    assert f": exact {len(rejected)} (" in stdout and re.search(rf"reasons\s+exact/\S+ {len(rejected)}\b", stdout)
    assert "dead        none" in stdout
    verified = sum(1 for m in tasks["math"] if m["verified"])
    for t, records in tasks.items():
        assert records, t
        line = re.search(rf"^\s*(?:tasks\s+)?{t}\s+(\d+) \(persona_enhanced (\d+)\)(.*)$", stdout, re.M)
        assert line is not None, t
        assert int(line.group(1)) == len(records) == int(line.group(2)), t
        if t == "math":
            assert f"verified {verified} (" in line.group(3)
    assert re.search(r"^tokens\s+\S+ prompt \+ \S+ completion sent", stdout, re.M)
    assert re.search(r"^cost\s+~\$", stdout, re.M)
    assert re.search(r"^diversity\s", stdout, re.M)
    assert f"report      {out / 'report.json'}" in stdout
    plots_line = next(ln for ln in stdout.splitlines() if ln.startswith("plots "))
    for name in PLOTS:
        assert str(out / name) in plots_line
        assert (out / name).read_bytes().startswith(PNG), name

    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["state"] == "finished" and doc["run"]["inputs_done"] == 3
    assert doc["personas"]["accepted"] == len(personas)
    assert doc["personas"]["by_depth"] == {str(d): n for d, n in sorted(depth.items())}
    assert doc["gate"]["candidates"] == candidates and doc["gate"]["rejected"] == len(rejected)
    assert doc["gate"]["by_stage"]["exact"]["count"] == len(rejected)
    assert doc["dead_letters"]["total"] == 0
    assert set(doc["tasks"]) == set(TASKS)
    for t, records in tasks.items():
        assert doc["tasks"][t]["records"] == len(records) == doc["files"][t]["records"], t
        assert doc["tasks"][t]["personas"] == len({x["persona_id"] for x in records}), t
        assert doc["tasks"][t]["by_mode"] == dict(Counter(x["mode"] for x in records)), t
    assert doc["tasks"]["math"]["verified"] == verified
    assert doc["files"]["personas"]["records"] == len(personas)
    assert doc["files"]["rejected"]["records"] == len(rejected)
    # tokens: what the records carry, summed here, and what was sent (the run's counters)
    recorded = [0, 0]
    for records in [personas, *tasks.values()]:
        for x in records:
            if x.get("usage"):
                recorded[0] += x["usage"]["prompt_tokens"]
                recorded[1] += x["usage"]["completion_tokens"]
    usage = doc["usage"]
    assert [usage["recorded"]["prompt_tokens"], usage["recorded"]["completion_tokens"]] == recorded
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert usage["requests"]["prompt_tokens"] == state["counters"]["prompt_tokens"] > 0
    assert usage["requests"]["requests"] == state["counters"]["requests"]
    assert list(usage["by_model"]) == ["m"]
    assert doc["cost"]["configured"] and doc["cost"]["by_model"]["m"] == round(_usd(*recorded), 6)
    assert set(doc["written"]["plots"]) == {"depth", "rejects", "diversity"}
    div = doc["diversity"]
    assert div["status"] == "ok" or div["reason"].startswith("no embedder"), div


class AlikeOutputs:
    """Distinct persona vectors; one and the same output vector, whose float32 self-dot is 0.99999976."""

    def __init__(self, personas: list[str]) -> None:
        self.personas = personas
        self.output = np.zeros(8, dtype=np.float32)
        self.output[0] = np.sqrt(np.float32(0.99999976))

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for t in texts:
            if t in self.personas:
                v = np.random.default_rng(self.personas.index(t)).normal(size=8)
                rows.append(v / np.linalg.norm(v))
            else:
                rows.append(self.output)
        return np.asarray(rows, dtype=np.float32)


def _strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_identical_outputs_give_no_pearson_and_strict_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    personas = [f"A {job} who keeps bees in the valley." for job in ("nurse", "welder", "pilot", "baker",
                                                                     "farmer", "tailor", "miner")]
    sink = ZstdJsonlSink(out / "logic.jsonl.zst")
    for i, p in enumerate(personas):  # 7 personas: 21 pairs, every one with the same output similarity
        sink.write({"id": f"r{i}", "persona_id": f"p{i}", "persona": p, "task": "logic", "mode": "zero_shot",
                    "puzzle": "Which bee never stings?", "answer": "A spelling bee."})
    sink.close()
    report = write_report(out, None, embedder=AlikeOutputs(personas), plots=False)
    logic = report["diversity"]["tasks"]["logic"]
    assert logic["pairs"] == 21
    assert logic["pearson"] is None  # no variance in the outputs' similarity: no correlation to report
    assert "nan" not in render_text(report)
    _strict((out / "report.json").read_text())
