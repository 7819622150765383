"""The command line: exit codes, resume messages, config fingerprints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.io.sinks import read_records
from engine.testing.fake_openai import run_in_thread


def _reply(body: dict) -> str:
    return json.dumps({"persona": "a reader of " + body["messages"][-1]["content"][8:50]})


CORE_ONLY = ["--set", "expansion.enabled=false", "--set", "synthesis.enabled=false",
             "--set", "gate.semantic.enabled=false", "--set", "gate.minhash.enabled=false", "--no-report"]


def persona(*args: str, cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    if args and args[0] == "run" and "--help" not in args:
        args = (*args, *CORE_ONLY)
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, **kw)  # type: ignore[call-overload]


def _inputs(tmp_path: Path, n: int = 30) -> Path:
    p = tmp_path / "in.txt"
    p.write_text("".join(f"input text number {i} about gardening\n" for i in range(n)))
    return p


def test_help_and_version(tmp_path: Path) -> None:
    r = persona("--help", cwd=tmp_path)
    assert r.returncode == 0 and "run" in r.stdout and "exit codes" in r.stdout
    r = persona("run", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "resumes" in r.stdout and "--limit" in r.stdout
    assert persona("--version", cwd=tmp_path).stdout.startswith("persona-engine ")
    assert persona("frobnicate", cwd=tmp_path).returncode == 2


def test_bad_config_names_key_and_exits_1(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run]\nlimt = 3\n")
    r = persona("run", "x.txt", "-c", str(cfg), cwd=tmp_path)
    assert r.returncode == 1
    assert "run.limt" in r.stderr and "unknown key" in r.stderr and str(cfg) in r.stderr


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    r = persona("run", "nope.txt", "--base-url", "http://127.0.0.1:9", cwd=tmp_path)
    assert r.returncode == 1 and "input not found" in r.stderr and "nope.txt" in r.stderr


def test_run_then_rerun_is_complete_and_changed_config_is_refused(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    with run_in_thread(reply=_reply) as fake:
        common = ["run", str(inputs), "-o", "out", "--base-url", fake.base_url, "--model", "m", "--progress", "off"]
        r = persona(*common, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert len(read_records(tmp_path / "out" / "personas.jsonl.zst")) == 30
        status = json.loads((tmp_path / "out" / "checkpoint" / "status.json").read_text())
        assert status["state"] == "finished" and status["counters"]["inputs_done"] == 30
        # the latency histogram the daemon exports: cumulative, every answered request counted once
        assert status["latency_buckets"]["buckets"]["inf"] == status["counters"]["ok"] == 30
        again = persona(*common, cwd=tmp_path)
        assert again.returncode == 0
        assert len(read_records(tmp_path / "out" / "personas.jsonl.zst")) == 30  # nothing written twice
        changed = persona(*common, "--set", "text_to_persona.relation='write'", cwd=tmp_path)
        assert changed.returncode == 1 and "another config" in changed.stderr and "--force" in changed.stderr
        forced = persona(*common, "--set", "text_to_persona.relation='write'", "--force", cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr


def test_sigint_checkpoints_exits_130_and_says_how_to_resume(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, 400)
    with run_in_thread(reply=_reply, latency=0.05) as fake:
        cmd = [sys.executable, "-m", "engine", "run", str(inputs), "-o", "out", "--base-url", fake.base_url,
               "--model", "m", "--progress", "off", "--concurrency", "4", *CORE_ONLY]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + 30
        while time.time() < deadline and fake.stats.served < 20:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Resume with" in err and "persona run" in err and "-o out" in err
        done = len(read_records(tmp_path / "out" / "personas.jsonl.zst"))
        assert 0 < done < 400
        r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    personas = read_records(tmp_path / "out" / "personas.jsonl.zst")
    assert len(personas) == 400 and len({p["id"] for p in personas}) == 400


def test_unauthorized_endpoint_stops_the_run_with_exit_1(tmp_path: Path) -> None:
    from engine.testing.fake_openai import Fault

    inputs = _inputs(tmp_path, 20)
    with run_in_thread(reply=_reply, faults=lambda n, b: Fault("401")) as fake:
        r = persona("run", str(inputs), "-o", "out", "--base-url", fake.base_url, "--model", "m",
                    "--progress", "off", cwd=tmp_path)
    assert r.returncode == 1
    assert "HTTP 401" in r.stderr and "resume" in r.stderr
    assert read_records(tmp_path / "out" / "dead_letter.jsonl.zst") == []  # nothing dead-lettered for a bad key
