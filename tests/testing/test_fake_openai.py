"""Tests for the fake OpenAI-compatible server: each fault, budgets, queueing, metrics, runners."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.testing.fake_openai import (
    FAULT_KINDS,
    FakeOpenAI,
    Fault,
    estimate_tokens,
    format_reset,
    run_in_thread,
)

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hello world"}]}


@pytest.fixture(params=[pytest.param(("asyncio", {}), id="asyncio"),
                        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


def chat_url(fake: FakeOpenAI) -> str:
    return fake.base_url + "/v1/chat/completions"


def always(fault: Fault) -> FakeOpenAI:
    return FakeOpenAI(faults=lambda n, body: fault)


async def test_happy_path_shape_and_usage(session: aiohttp.ClientSession) -> None:
    seen: list[dict[str, Any]] = []

    def reply(body: dict[str, Any]) -> str:
        seen.append(body)
        return '{"persona": "a chemist"}'

    body = {**BODY, "response_format": {"type": "json_schema", "json_schema": {"name": "p"}}}
    async with FakeOpenAI(reply=reply) as fake:
        async with session.post(chat_url(fake), json=body) as r:
            assert r.status == 200
            data = await r.json()
    assert seen == [body]
    assert data["object"] == "chat.completion" and data["model"] == "m"
    assert data["choices"][0]["message"]["content"] == '{"persona": "a chemist"}'
    assert data["choices"][0]["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["prompt_tokens"] == estimate_tokens("hello world") == 3
    assert usage["completion_tokens"] == estimate_tokens('{"persona": "a chemist"}')
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert fake.stats.served == 1 and fake.stats.tokens_served == usage["total_tokens"]


@pytest.mark.parametrize("kind,status", [("429", 429), ("500", 500), ("503", 503),
                                         ("400", 400), ("401", 401)])
async def test_status_faults(session: aiohttp.ClientSession, kind: str, status: int) -> None:
    async with always(Fault(kind)) as fake:  # type: ignore[arg-type]
        async with session.post(chat_url(fake), json=BODY) as r:
            assert r.status == status
            assert "Retry-After" not in r.headers
            err = (await r.json())["error"]
    assert "injected" in err["message"] and err["type"]
    assert fake.stats.by_status[status] == 1 and fake.stats.faults[kind] == 1


@pytest.mark.parametrize("retry_after", ["2", formatdate(time.time() + 30, usegmt=True)])
async def test_429_carries_retry_after(session: aiohttp.ClientSession, retry_after: str) -> None:
    async with always(Fault("429", retry_after=retry_after)) as fake:
        async with session.post(chat_url(fake), json=BODY) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == retry_after
            assert (await r.json())["error"]["code"] == "rate_limit_exceeded"


async def test_slow_passes_a_short_timeout(session: aiohttp.ClientSession) -> None:
    async with always(Fault("slow", delay=0.5)) as fake:
        with pytest.raises(asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one too
            async with session.post(chat_url(fake), json=BODY,
                                    timeout=aiohttp.ClientTimeout(total=0.15)) as r:
                await r.read()
        t0 = time.monotonic()
        async with session.post(chat_url(fake), json=BODY) as r:
            assert r.status == 200
            await r.json()
        assert time.monotonic() - t0 >= 0.5


async def test_reset_drops_the_connection_mid_body(session: aiohttp.ClientSession) -> None:
    async with always(Fault("reset")) as fake:
        for _ in range(3):  # the next request on the pool must not reuse the dead connection
            with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                                aiohttp.ClientOSError)):
                async with session.post(chat_url(fake), json=BODY) as r:
                    assert r.status == 200  # headers arrive first
                    await r.read()


async def test_truncated_body_is_shorter_than_content_length(
    session: aiohttp.ClientSession,
) -> None:
    async with always(Fault("truncated")) as fake:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(chat_url(fake), json=BODY) as r:
                assert r.status == 200
                await r.read()


async def test_malformed_is_200_with_invalid_json(session: aiohttp.ClientSession) -> None:
    async with always(Fault("malformed")) as fake:
        async with session.post(chat_url(fake), json=BODY) as r:
            assert r.status == 200
            raw = await r.read()
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


async def test_no_usage_is_valid_without_usage(session: aiohttp.ClientSession) -> None:
    async with always(Fault("no_usage")) as fake:
        async with session.post(chat_url(fake), json=BODY) as r:
            data = await r.json()
    assert "usage" not in data and data["choices"][0]["message"]["content"]


async def test_bad_request_body_is_400(session: aiohttp.ClientSession) -> None:
    async with FakeOpenAI() as fake:
        async with session.post(chat_url(fake), data=b"{nope") as r:
            assert r.status == 400
        async with session.post(chat_url(fake), json={"model": "m"}) as r:
            assert r.status == 400


def test_unknown_fault_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("418")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FakeOpenAI(fault_kinds=("500", "teapot"))


async def test_random_faults_are_seeded(session: aiohttp.ClientSession) -> None:
    async def statuses() -> list[int]:
        out = []
        async with FakeOpenAI(fault_rate=0.5, fault_kinds=("500", "503"), seed=7) as fake:
            for _ in range(40):
                async with session.post(chat_url(fake), json=BODY) as r:
                    out.append(r.status)
        return out

    first, second = await statuses(), await statuses()
    assert first == second
    assert 8 <= sum(s != 200 for s in first) <= 32 and set(first) <= {200, 500, 503}


async def test_rpm_budget_answers_429_once_exceeded(session: aiohttp.ClientSession) -> None:
    # 120/min = 2/s; a 60 s burst holds 120 requests, so the 121st is over budget by ~0.5 s.
    async with FakeOpenAI(rpm=120, ratelimit_headers=True) as fake:
        for i in range(120):
            async with session.post(chat_url(fake), json=BODY) as r:
                assert r.status == 200, i
                assert int(r.headers["x-ratelimit-remaining-requests"]) == 119 - i
        async with session.post(chat_url(fake), json=BODY) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "1"
            assert 0 < int(r.headers["retry-after-ms"]) <= 500
            assert r.headers["x-ratelimit-limit-requests"] == "120"
            assert r.headers["x-ratelimit-reset-requests"].endswith("s")
            assert (await r.json())["error"]["type"] == "requests"
    assert fake.stats.rate_limited == 1 and fake.stats.served == 120


async def test_rpm_pace_with_short_burst(session: aiohttp.ClientSession) -> None:
    # 600/min with a 0.2 s burst: 2 at once, then one every 100 ms.
    async with FakeOpenAI(rpm=600, burst_s=0.2) as fake:
        codes = []
        for _ in range(4):
            async with session.post(chat_url(fake), json=BODY) as r:
                codes.append(r.status)
        assert codes[:2] == [200, 200] and 429 in codes[2:]
        await asyncio.sleep(0.15)
        async with session.post(chat_url(fake), json=BODY) as r:
            assert r.status == 200


async def test_tpm_charges_prompt_estimate_plus_max_tokens(
    session: aiohttp.ClientSession,
) -> None:
    # 600 tokens/min with a 60 s burst = 600 tokens; each request costs 3 + 97 = 100.
    async with FakeOpenAI(tpm=600, ratelimit_headers=True) as fake:
        for i in range(6):
            async with session.post(chat_url(fake), json={**BODY, "max_tokens": 97}) as r:
                assert r.status == 200
                assert int(r.headers["x-ratelimit-remaining-tokens"]) == 500 - 100 * i
        async with session.post(chat_url(fake), json={**BODY, "max_tokens": 97}) as r:
            assert r.status == 429
            # An empty bucket needs about a full minute to refill.
            assert 55 < parse_reset(r.headers["x-ratelimit-reset-tokens"]) <= 60
            assert (await r.json())["error"]["type"] == "tokens"


def parse_reset(text: str) -> float:
    """Parse an x-ratelimit-reset-* value ("20ms", "2.5s", "6m0s", "1h2m3s") to seconds."""
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?([\d.]+)s", text)
    assert m, text
    return int(m[1] or 0) * 3600 + int(m[2] or 0) * 60 + float(m[3])


def test_format_reset_matches_openai() -> None:
    assert format_reset(0.02) == "20ms"
    assert format_reset(1) == "1s"
    assert format_reset(2.5) == "2.5s"
    assert format_reset(360) == "6m0s"
    assert format_reset(3723) == "1h2m3s"
    for seconds in (0.0, 0.5, 1.25, 59.999, 61, 4000.5):
        assert parse_reset(format_reset(seconds)) == pytest.approx(seconds, abs=1e-3)


async def test_max_concurrency_queues_and_metrics_show_it(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeOpenAI(latency=0.3, max_concurrency=2) as fake:
        async def one() -> int:
            async with session.post(chat_url(fake), json=BODY) as r:
                await r.read()
                return r.status

        t0 = time.monotonic()
        tasks = [asyncio.ensure_future(one()) for _ in range(6)]
        await asyncio.sleep(0.15)
        async with session.get(fake.base_url + "/metrics") as r:
            text = await r.text()
        statuses = await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
    samples = {s.name: s.value for fam in text_string_to_metric_families(text)
               for s in fam.samples}
    assert samples["vllm:num_requests_running"] == 2
    assert samples["vllm:num_requests_waiting"] == 4
    assert statuses == [200] * 6 and fake.stats.max_concurrent == 2
    assert elapsed >= 0.9  # three waves of 0.3 s


async def test_metrics_parse_and_count(session: aiohttp.ClientSession) -> None:
    async with FakeOpenAI() as fake:
        for _ in range(3):
            async with session.post(chat_url(fake), json=BODY) as r:
                await r.read()
        async with session.get(fake.base_url + "/metrics") as r:
            assert r.status == 200
            families = {f.name: f for f in text_string_to_metric_families(await r.text())}
    assert families["vllm:num_requests_running"].type == "gauge"
    assert families["vllm:num_requests_waiting"].samples[0].labels == {"model_name": "fake-model"}
    assert families["vllm:request_success"].samples[0].value == 3
    assert sum(n for _, n in fake.stats.timeline) == 3


async def test_models_and_health(session: aiohttp.ClientSession) -> None:
    async with FakeOpenAI(model="tiny") as fake:
        async with session.get(fake.base_url + "/v1/models") as r:
            assert (await r.json())["data"][0]["id"] == "tiny"
        async with session.get(fake.base_url + "/health") as r:
            assert r.status == 200


async def test_stream_sse(session: aiohttp.ClientSession) -> None:
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    async with FakeOpenAI(reply="one two three") as fake:
        async with session.post(chat_url(fake), json=body) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            raw = (await r.read()).decode()
    events = [line[6:] for line in raw.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-1]["usage"]["completion_tokens"] == estimate_tokens("one two three")


@pytest.mark.parametrize("kind", ["reset", "truncated"])
async def test_stream_cut_short(session: aiohttp.ClientSession, kind: str) -> None:
    async with always(Fault(kind)) as fake:  # type: ignore[arg-type]
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
            async with session.post(chat_url(fake), json={**BODY, "stream": True}) as r:
                await r.read()
    assert fake.stats.served == 0


def test_run_in_thread_serves_a_sync_client() -> None:
    with run_in_thread(reply="hi") as fake:
        req = urllib.request.Request(chat_url(fake), data=json.dumps(BODY).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.load(r)["choices"][0]["message"]["content"] == "hi"
        assert fake.stats.served == 1
    with pytest.raises(OSError):
        urllib.request.urlopen(fake.base_url + "/health", timeout=1)


def test_cli_runs_as_a_separate_process() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "engine.testing.fake_openai", "--port", "0",
                             "--latency", "0.01"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_every_fault_kind_is_covered() -> None:
    assert set(FAULT_KINDS) == {"429", "500", "503", "slow", "reset", "malformed", "no_usage",
                                "truncated", "400", "401"}
