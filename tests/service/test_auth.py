"""Binding off loopback needs a token; with a token set, requests without it get 401."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.service.harness import DaemonProcess

TOKEN = "t0ken-for-tests-0123456789abcdef"


def _serve(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.service", "serve", "--state-dir", str(tmp_path / "s"),
                           "--port", "0", *args], capture_output=True, text=True, timeout=30, env=env)


def test_non_loopback_without_token_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PERSONA_TOKEN", "MY_TOKEN")}
    r = _serve(tmp_path, "--host", "0.0.0.0", env=env)
    assert r.returncode == 1 and "PERSONA_TOKEN" in r.stderr and "0.0.0.0" in r.stderr
    r = _serve(tmp_path, "--host", "0.0.0.0", env={**env, "PERSONA_TOKEN": "short"})
    assert r.returncode == 1 and "shorter" in r.stderr
    cfg = tmp_path / "d.toml"
    cfg.write_text('[service]\nhost = "::"\ntoken_env = "MY_TOKEN"\n')
    r = _serve(tmp_path, "-c", str(cfg), env={**env, "PERSONA_TOKEN": TOKEN})
    assert r.returncode == 1 and "MY_TOKEN" in r.stderr
    assert not (tmp_path / "s" / "daemon.json").exists()


def test_token_is_required_when_set(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "state", env={"PERSONA_TOKEN": TOKEN}).start()
    try:
        for path in ("/v1/jobs", "/v1/jobs/x", "/metrics", "/openapi.json"):
            assert d.call("GET", path)[0] == 401, path
            assert d.call("GET", path, token="wrong-token-wrong-token")[0] == 401, path
        assert d.call("POST", "/v1/jobs", {"config": "", "inputs": ["x"]})[0] == 401
        assert d.call("POST", "/v1/jobs/x/cancel")[0] == 401
        assert d.call("GET", "/healthz")[0] == 200  # liveness probes carry no token
        status, body = d.call("GET", "/v1/jobs", token=TOKEN)
        assert status == 200 and body == {"jobs": []}
        env = {**os.environ, "PERSONA_URL": d.url, "PERSONA_TOKEN": TOKEN}
        r = subprocess.run([sys.executable, "-m", "engine.service", "jobs"], capture_output=True, text=True,
                           env=env, timeout=30)
        assert r.returncode == 0 and "no jobs" in r.stdout
        env["PERSONA_TOKEN"] = ""
        r = subprocess.run([sys.executable, "-m", "engine.service", "jobs"], capture_output=True, text=True,
                           env=env, timeout=30)
        assert r.returncode == 1 and "401" in r.stderr
    finally:
        assert d.kill(15) == 0


def test_non_loopback_with_token_starts_and_enforces_it(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "state", env={"PERSONA_TOKEN": TOKEN}, host="0.0.0.0").start()
    try:
        assert d.call("GET", "/healthz")[0] == 200
        assert d.call("GET", "/v1/jobs")[0] == 401
        assert d.call("GET", "/v1/jobs", token=TOKEN)[0] == 200
    finally:
        assert d.kill(15) == 0
