"""kill -9 of the daemon mid-job, then SIGTERM, restarting each time: every job completes exactly."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from engine.service.harness import DaemonProcess, gone
from engine.testing.fake_openai import run_in_thread

from .conftest import check_outputs, config_text, reply, write_inputs

N = 1500


def _pids(state: Path) -> dict[str, int]:
    out = {}
    for p in (state / "jobs").glob("*/job.json"):
        doc = json.loads(p.read_text())
        if doc.get("pid"):
            out[doc["id"]] = doc["pid"]
    return out


def test_kill9_and_sigterm_then_restart_completes_every_job(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(f'[service]\nroots = ["{root}"]\npoll_interval = 0.1\ngrow_after = 1.0\n')
    expected = {name: write_inputs(root / f"{name}.jsonl", N, name) for name in ("x", "y")}
    daemons: list[DaemonProcess] = []

    def start() -> DaemonProcess:
        daemons.append(DaemonProcess(root / "state", config=cfg, log=tmp_path / "daemon.log").start())
        return daemons[-1]

    with run_in_thread(reply=reply, latency=0.02, fault_rate=0.03, seed=5,
                       fault_kinds=("500", "503", "reset", "malformed", "truncated")) as fake:
        try:
            _run(start, fake, root, expected)
        finally:
            for d in daemons:  # stop the daemon before its endpoint goes away
                d.stop()


def _run(start: Callable[[], DaemonProcess], fake: object, root: Path, expected: dict[str, set[str]]) -> None:
    d = start()
    jobs = {}
    for name, weight in (("x", 1.0), ("y", 3.0)):
        status, job = d.call("POST", "/v1/jobs", {"config": config_text(fake.base_url, max_in_flight=8),
                                                  "inputs": [f"{name}.jsonl"], "weight": weight,
                                                  "output": f"out-{name}"})
        assert status == 201, job
        jobs[name] = job["id"]
    d.wait_progress(jobs["x"], 100)
    children = _pids(root / "state")
    assert set(children) == set(jobs.values())

    assert d.kill(signal.SIGKILL) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while not all(gone(p) for p in children.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(p) for p in children.values()), "a job process outlived its SIGKILLed daemon"

    d = start()
    for jid in jobs.values():
        j = d.job(jid)
        assert j["state"] in ("queued", "running") and j["launches"] >= 1, j
    d.wait_progress(jobs["x"], d.job(jobs["x"])["inputs_done"] + 150)
    children = _pids(root / "state")
    assert d.kill(signal.SIGTERM) == 0  # graceful: every child checkpoints, exits 130; the daemon exits 0
    assert all(gone(p) for p in children.values())
    for jid in jobs.values():
        doc = json.loads((root / "state" / "jobs" / jid / "job.json").read_text())
        assert doc["state"] in ("queued", "finished") and not doc["pid"], doc

    d = start()
    for name, jid in jobs.items():
        j = d.wait(jid, ("finished",), timeout=60)
        assert j["launches"] >= 2 and j["inputs_done"] == N
        counts = check_outputs(Path(j["output"]), expected[name])
        assert counts["rejected"] > 0  # the planted duplicates met the gate across restarts
