"""The job API against a real daemon process: round trips, shares, paths, metrics, OpenAPI, the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.service.harness import DaemonProcess, gone

from .conftest import check_outputs, config_text, write_inputs


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("root")


@pytest.fixture(scope="module")
def daemon(root: Path, fake: object) -> Iterator[DaemonProcess]:
    cfg = root.parent / "daemon.toml"
    cfg.write_text(f'[service]\nroots = ["{root}"]\npoll_interval = 0.1\ngrow_after = 0.5\n')
    d = DaemonProcess(root / "state", config=cfg).start()
    yield d
    assert d.kill(15) == 0  # a graceful stop exits 0


def _submit(d: DaemonProcess, fake: object, inputs: list[str], **kw: object) -> dict:
    body = {"config": config_text(fake.base_url, max_in_flight=kw.pop("max_in_flight", 8)),  # type: ignore[attr-defined]
            "inputs": inputs, **kw}
    status, job = d.call("POST", "/v1/jobs", body)
    assert status == 201, job
    return job


def test_submit_status_pause_resume_cancel(daemon: DaemonProcess, fake: object, root: Path) -> None:
    ids = write_inputs(root / "a.jsonl", 500, "a")
    job = _submit(daemon, fake, ["a.jsonl"], name="first", max_in_flight=2)
    assert job["state"] in ("queued", "running") and job["inputs"] == [str(root / "a.jsonl")]
    assert job["output"].startswith(str(root / "state" / "jobs"))
    status, listed = daemon.call("GET", "/v1/jobs")
    assert status == 200 and [j["id"] for j in listed["jobs"]] == [job["id"]]

    j = daemon.wait_progress(job["id"], 60)
    assert j["state"] == "running" and j["requests"]["sent"] > 0 and j["tokens"]["prompt"] > 0
    assert j["concurrency"] == {"fake": 2} and j["inputs_total"] == 500
    assert j["progress_line"].startswith("inputs ") and "req/s" in j["progress_line"]

    pid = int((Path(j["output"]).parent / "job.json").read_text().split('"pid":')[1].split(",")[0])
    status, j = daemon.call("POST", f"/v1/jobs/{job['id']}/pause")
    assert status == 200 and j["state"] in ("pausing", "paused")
    j = daemon.wait(job["id"], ("paused",))
    assert j["exit_code"] == 130 and gone(pid)
    done_at_pause = j["inputs_done"]
    assert 0 < done_at_pause < 500
    status, again = daemon.call("POST", f"/v1/jobs/{job['id']}/pause")
    assert status == 200 and again["state"] == "paused"

    status, j = daemon.call("POST", f"/v1/jobs/{job['id']}/resume")
    assert status == 200 and j["state"] in ("queued", "running")
    j = daemon.wait(job["id"], ("finished",), timeout=60)
    assert j["launches"] == 2 and j["exit_code"] == 0 and j["inputs_done"] == 500 and j["eta_s"] is None
    assert j["gate"]["accepted"] + sum(j["gate"]["rejected"].values()) + j["requests"]["dead"] >= 500
    assert j["gate"]["rejected"].get("exact", 0) > 0 and "exact.duplicate" in j["gate"]["reasons"]
    check_outputs(Path(j["output"]), ids)

    # the same commands through the CLI harness, the way `persona status` prints them
    env = {**os.environ, "PERSONA_URL": daemon.url}
    out = subprocess.run([sys.executable, "-m", "engine.service", "status", job["id"]], capture_output=True,
                         text=True, env=env, timeout=30)
    assert out.returncode == 0 and f"{job['id']} finished" in out.stdout and "inputs 500/500 | personas" in out.stdout
    out = subprocess.run([sys.executable, "-m", "engine.service", "jobs"], capture_output=True, text=True, env=env,
                         timeout=30)
    assert out.returncode == 0 and job["id"] in out.stdout and "500/500" in out.stdout

    assert daemon.call("POST", f"/v1/jobs/{job['id']}/pause")[0] == 409
    assert daemon.call("POST", f"/v1/jobs/{job['id']}/cancel")[0] == 409
    assert daemon.call("GET", "/v1/jobs/nope")[0] == 404

    # cancel: through the CLI, while it runs
    write_inputs(root / "b.jsonl", 3000, "b")
    (root / "job-b.toml").write_text(config_text(fake.base_url, max_in_flight=2))  # type: ignore[attr-defined]
    out = subprocess.run([sys.executable, "-m", "engine.service", "submit", str(root / "job-b.toml"), "b.jsonl",
                          "--name", "second"], capture_output=True, text=True, env=env, cwd=root, timeout=30)
    assert out.returncode == 0, out.stderr
    bid = out.stdout.split()[2]
    daemon.wait_progress(bid, 20)
    out = subprocess.run([sys.executable, "-m", "engine.service", "cancel", bid], capture_output=True, text=True,
                         env=env, timeout=30)
    assert out.returncode == 0 and bid in out.stdout
    j = daemon.wait(bid, ("cancelled",))
    assert 0 < j["inputs_done"] < 3000 and j["finished_at"]
    assert daemon.call("POST", f"/v1/jobs/{bid}/resume")[0] == 409


def test_weights_share_the_endpoint_and_shares_follow_jobs(daemon: DaemonProcess, fake: object, root: Path) -> None:
    ids = write_inputs(root / "c.jsonl", 1200, "c")
    idd = write_inputs(root / "d.jsonl", 300, "d")
    c = _submit(daemon, fake, ["c.jsonl"], weight=3.0, output="out-c", max_in_flight=16)
    assert c["output"] == str(root / "out-c")
    daemon.wait_progress(c["id"], 10)
    assert daemon.job(c["id"])["concurrency"] == {"fake": 16}  # alone: the whole endpoint
    d = _submit(daemon, fake, ["d.jsonl"], weight=1.0, output="out-d", max_in_flight=16)
    assert d["concurrency"] == {"fake": 4}
    # c holds more than 25 % over its new share (12): it checkpoints, exits 130 and is re-launched with it
    deadline = time.monotonic() + 30
    while (j := daemon.job(c["id"]))["concurrency"] != {"fake": 12} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert j["concurrency"] == {"fake": 12} and j["launches"] == 2
    daemon.wait(d["id"], ("finished",), timeout=60)
    cj = daemon.wait(c["id"], ("finished",), timeout=60)
    assert cj["launches"] in (2, 3)  # after d finished, c may have grown back to 8
    check_outputs(root / "out-c", ids)
    check_outputs(root / "out-d", idd)


def test_paths_outside_the_roots_are_refused(daemon: DaemonProcess, fake: object, root: Path,
                                             tmp_path: Path) -> None:
    write_inputs(root / "ok.jsonl", 3)
    outside = tmp_path / "outside.jsonl"
    write_inputs(outside, 3)
    os.symlink(outside, root / "link.jsonl")
    cfg = config_text(fake.base_url)  # type: ignore[attr-defined]
    before = len(daemon.call("GET", "/v1/jobs")[1]["jobs"])
    cases = [
        ({"inputs": [str(outside)]}, str(outside)),
        ({"inputs": ["../outside.jsonl"]}, "../outside.jsonl"),
        ({"inputs": ["link.jsonl"]}, "link.jsonl"),
        ({"inputs": ["ok.jsonl"], "output": str(tmp_path / "out")}, str(tmp_path / "out")),
        ({"inputs": ["ok.jsonl"], "output": "../out"}, "../out"),
        ({"inputs": ["missing.jsonl"]}, str(root / "missing.jsonl")),
        ({"config": cfg.replace("[run]\n", '[run]\ninputs = ["/etc/hostname"]\n')}, "/etc/hostname"),
        ({"config": cfg.replace('endpoint = "fake"', 'endpoint = "fake"\ntemplate = "/etc/passwd"'),
          "inputs": ["ok.jsonl"]}, "/etc/passwd"),
    ]
    for body, named in cases:
        status, err = daemon.call("POST", "/v1/jobs", {"config": cfg, **body})
        assert 400 <= status < 500 and named in err["error"], (body, status, err)
        assert err["path"] == named, err
    bad = cfg.replace("[run]\n", "[run]\nlimt = 3\n")
    status, err = daemon.call("POST", "/v1/jobs", {"config": bad, "inputs": ["ok.jsonl"]})
    assert status == 400 and err["key"] == "run.limt"
    assert daemon.call("POST", "/v1/jobs", {"config": "x = [", "inputs": ["ok.jsonl"]})[0] == 400
    assert daemon.call("POST", "/v1/jobs", {"inputs": ["ok.jsonl"]})[0] == 400
    assert len(daemon.call("GET", "/v1/jobs")[1]["jobs"]) == before  # nothing was created


def test_metrics_openapi_health(daemon: DaemonProcess, fake: object, root: Path) -> None:
    write_inputs(root / "m.jsonl", 200, "m")
    job = _submit(daemon, fake, ["m.jsonl"], max_in_flight=2)
    daemon.wait_progress(job["id"], 20)
    status, text = daemon.call("GET", "/metrics", raw=True)
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("persona_jobs", "persona_requests", "persona_tokens", "persona_rate_limited", "persona_retries",
                 "persona_gate_accepted", "persona_gate_rejected", "persona_in_flight", "persona_concurrency_limit",
                 "persona_queue_depth", "persona_checkpoint_age_seconds", "persona_inputs_done",
                 "process_resident_memory_bytes"):
        assert name in fams, name
    mine = [s for s in fams["persona_tokens"].samples if s.labels.get("job_id") == job["id"]]
    assert {s.labels["kind"] for s in mine} == {"prompt", "completion"} and all(s.value > 0 for s in mine)
    running = [s for s in fams["persona_jobs"].samples if s.labels["state"] == "running"]
    assert running[0].value >= 1
    ages = [s.value for s in fams["persona_checkpoint_age_seconds"].samples if s.labels["job_id"] == job["id"]]
    assert ages and 0 <= ages[0] < 30
    daemon.wait(job["id"], ("finished",))
    text = daemon.call("GET", "/metrics", raw=True)[1]
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    rej = [s for s in fams["persona_gate_rejected"].samples if s.labels["job_id"] == job["id"]]
    assert rej and rej[0].labels["stage"] == "exact" and rej[0].labels["reason"] == "duplicate"

    # every metric the shipped Grafana dashboard queries is one the daemon exports
    dashboard = (Path(__file__).parents[2] / "deploy" / "grafana-dashboard.json").read_text()
    queried = set(re.findall(r"\b((?:persona|process)_[a-z_]+)", dashboard))
    exported = {s.name for f in fams.values() for s in f.samples} | set(fams)
    missing = {m for m in queried if m not in exported and not m.startswith("persona_request_latency")}
    assert not missing, missing

    status, doc = daemon.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert "/v1/jobs/{id}/pause" in doc["paths"] and "SubmitRequest" in doc["components"]["schemas"]
    assert "paused" in doc["components"]["schemas"]["JobView"]["properties"]["state"]["enum"]
    status, health = daemon.call("GET", "/healthz")
    assert status == 200 and health["status"] == "ok"


def test_pause_right_after_launch_waits_for_the_child_then_pauses(daemon: DaemonProcess, fake: object,
                                                                  root: Path) -> None:
    ids = write_inputs(root / "e.jsonl", 400, "e")
    job = _submit(daemon, fake, ["e.jsonl"], max_in_flight=2)
    status, j = daemon.call("POST", f"/v1/jobs/{job['id']}/pause")  # the child is still importing
    assert status == 200 and j["state"] == "pausing"
    j = daemon.wait(job["id"], ("paused", "failed"))
    assert j["state"] == "paused" and j["exit_code"] == 130 and not j["error"], j  # not a KeyboardInterrupt crash
    assert daemon.call("POST", f"/v1/jobs/{job['id']}/resume")[0] == 200
    j = daemon.wait(job["id"], ("finished",))
    check_outputs(Path(j["output"]), ids)
