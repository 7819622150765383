"""No API key value reaches an API answer, the daemon's log, or any file in the state dir."""

from __future__ import annotations

from pathlib import Path

import zstandard

from engine.service.harness import DaemonProcess

from .conftest import config_text, write_inputs

ENV_KEY = "sk-envkey-0123456789ABCDEFGHIJ"
INLINE = ("sk-inline-9876543210ZYXWVUTSRQ", "inline-header-secret-value-42", "plainpassword-abcdefgh")


def _corpus(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".zst":
        data += zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def test_no_key_in_answers_logs_or_state(tmp_path: Path, fake: object) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_inputs(root / "in.jsonl", 50)
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(f'[service]\nroots = ["{root}"]\npoll_interval = 0.1\n')
    d = DaemonProcess(root / "state", config=cfg, env={"FAKE_LLM_KEY": ENV_KEY}).start()
    answers = []
    try:
        headers = (f'api_key_env = "FAKE_LLM_KEY"\napi_key = "{INLINE[0]}"\npassword = "{INLINE[2]}"\n'
                   f'headers = {{ Authorization = "Bearer {INLINE[0]}", "X-Api-Key" = "{INLINE[1]}", '
                   f'"X-Trace" = "on" }}')
        text = config_text(fake.base_url, headers=headers)  # type: ignore[attr-defined]
        status, job = d.call("POST", "/v1/jobs", {"config": text, "inputs": ["in.jsonl"]}, raw=True)
        assert status == 201, job
        answers.append(job)
        jid = job.split('"id":"')[1].split('"')[0]
        j = d.wait(jid, ("finished",))
        assert sorted(j["scrubbed"]) == sorted(["endpoints.fake.api_key", "endpoints.fake.password",
                                                "endpoints.fake.headers.Authorization",
                                                "endpoints.fake.headers.X-Api-Key"])
        for path in ("/v1/jobs", f"/v1/jobs/{jid}", "/metrics", "/openapi.json", "/healthz"):
            answers.append(d.call("GET", path, raw=True)[1])
    finally:
        d.stop()
    config = (root / "state" / "jobs" / jid / "config.toml").read_text()
    assert 'api_key_env = "FAKE_LLM_KEY"' in config.replace('"api_key_env"', "api_key_env") and "X-Trace" in config
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "child.log" for p in files) and any(p.name == "job.json" for p in files)
    for secret in (ENV_KEY, *INLINE):
        for a in answers:
            assert secret not in a
        for p in files:
            assert secret.encode() not in _corpus(p), (secret, p)
