"""The limiter keeps a client at the server's RPM/TPM: no 429s, and throughput at the limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import config, runner
from engine.testing.fake_openai import run_in_thread


def _inputs(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "in.txt"
    # equal-length texts: every request costs the same, so a token budget maps to a request rate
    p.write_text("".join(f"text number {i:06d} about a topic\n" for i in range(n)))
    return p


def _reply(body: dict) -> str:
    return json.dumps({"persona": "a reader of " + body["messages"][-1]["content"][8:40]})


def _cfg(base_url: str, **endpoint: object) -> config.Config:
    return config.from_dict({
        "run": {"checkpoint_interval": 2.0, "progress": "off"},
        "endpoints": {"fake": {"base_url": base_url, "model": "m", "max_in_flight": 64, **endpoint}},
        "text_to_persona": {"endpoint": "fake", "max_tokens": 32},
        "expansion": {"enabled": False}, "synthesis": {"enabled": False},
    })


def _rate(timeline: list[tuple[int, int]], start: int, end: int) -> float:
    return sum(n for s, n in timeline if start <= s < end) / (end - start)


@pytest.mark.slow
def test_rpm_at_server_limit_no_429_and_full_throughput(tmp_path: Path) -> None:
    rpm = 3000  # 50 requests/s
    with run_in_thread(reply=_reply, rpm=rpm) as fake:
        result = runner.execute(_cfg(fake.base_url, requests_per_minute=rpm), tmp_path / "out",
                                [str(_inputs(tmp_path, 600))], progress_mode="off")
        timeline = fake.stats.timeline
        assert fake.stats.n_429 == 0
    assert result.status == "finished"
    assert result.counters["rate_limited"] == 0
    rate = _rate(timeline, 2, 10)
    assert abs(rate - rpm / 60) / (rpm / 60) <= 0.05, (rate, timeline)


@pytest.mark.slow
def test_tpm_at_server_limit_no_429_and_full_throughput(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, 500)
    tpm = 240_000  # 4,000 tokens/s: about 33 requests/s at ~122 charged tokens each
    with run_in_thread(reply=_reply, tpm=tpm) as fake:
        result = runner.execute(_cfg(fake.base_url, tokens_per_minute=tpm), tmp_path / "out", [str(inputs)],
                                progress_mode="off")
        timeline = fake.stats.timeline
        requests = fake.stats.served
        charged = fake.stats.prompt_tokens + 32 * requests  # the fake charges prompt + max_tokens
        assert fake.stats.n_429 == 0
    assert result.status == "finished" and result.counters["rate_limited"] == 0
    per_request = charged / requests
    tokens_per_s = _rate(timeline, 2, 8) * per_request
    assert abs(tokens_per_s - tpm / 60) / (tpm / 60) <= 0.05, (tokens_per_s, per_request)


def test_retry_after_pauses_the_whole_endpoint(tmp_path: Path) -> None:
    """After a 429 with Retry-After: 1, no request reaches the server for about a second."""
    from engine.testing.fake_openai import Fault

    def faults(n: int, body: dict) -> Fault | None:
        return Fault("429", retry_after="1") if n == 5 else None

    with run_in_thread(reply=_reply, faults=faults, latency=0.01) as fake:
        import time

        arrivals: list[float] = []
        orig = fake.reply

        def reply(body: dict) -> str:
            arrivals.append(time.monotonic())
            return orig(body) if callable(orig) else orig

        fake.reply = reply
        result = runner.execute(_cfg(fake.base_url, max_in_flight=4), tmp_path / "out",
                                [str(_inputs(tmp_path, 40))], progress_mode="off")
    assert result.status == "finished" and result.counters["rate_limited"] == 1
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert max(gaps) >= 0.9, gaps  # the shared cool-down held every request back
