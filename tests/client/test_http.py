"""EndpointClient against the fake OpenAI server: every failure maps to exactly one error class."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from engine.client.http import EndpointClient
from engine.client.protocol import ChatReply, ChatRequest, Message
from engine.errors import EndpointError, FatalEndpointError, RateLimited, RetryableError
from engine.testing.fake_openai import FakeOpenAI, Fault


def _loops() -> list[Any]:
    out: list[Any] = [pytest.param(asyncio.run, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return out
    out.append(pytest.param(uvloop.run, id="uvloop"))
    return out


LOOPS = _loops()
Runner = Callable[[Awaitable[Any]], Any]

REQ = ChatRequest(
    model="m", messages=[Message("system", "sys"), Message("user", "hello there")], max_tokens=16
)


class RecordingFake(FakeOpenAI):
    """The fake, also noting each chat request's client address and headers."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.peers: list[Any] = []
        self.headers: list[dict[str, str]] = []

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.peers.append(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        self.headers.append(dict(request.headers))
        return await super()._chat(request)


async def _one(
    fake: FakeOpenAI, *, timeout: float = 5.0, **client_kw: Any
) -> tuple[Any, EndpointClient]:
    """Start `fake`, send REQ once; returns (reply or exception, client)."""
    async with fake:
        client = EndpointClient("ep", fake.base_url, request_timeout=timeout, **client_kw)
        async with client:
            try:
                return await client.complete(REQ), client
            except Exception as e:  # noqa: BLE001 - the test inspects it
                return e, client


def _fault(kind: str, **kw: Any) -> FakeOpenAI:
    f = Fault(kind, **kw)  # type: ignore[arg-type]
    return FakeOpenAI(faults=lambda n, body: f)


# ---- success ------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", LOOPS)
def test_success_reply_and_request(run: Runner) -> None:
    fake = RecordingFake(reply="a marine biologist")
    reply, client = run(_one(fake, api_key="sk-test-123", headers={"X-Extra": "1"}))
    assert isinstance(reply, ChatReply)
    assert reply.content == "a marine biologist"
    assert reply.model == "m"
    assert reply.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len("sys\nhello there") // 4 + 1
    assert reply.usage.completion_tokens == len("a marine biologist") // 4 + 1
    assert reply.latency > 0
    assert client.ratelimit is None  # the server sent no x-ratelimit headers
    h = fake.headers[0]
    assert h["Authorization"] == "Bearer sk-test-123"
    assert h["X-Extra"] == "1"
    assert fake.stats.served == 1


@pytest.mark.parametrize("base", ["{u}", "{u}/", "{u}/v1", "{u}/v1/"])
def test_base_url_with_or_without_v1(base: str) -> None:
    fake = FakeOpenAI(reply="x")

    async def main() -> ChatReply:
        async with fake:
            async with EndpointClient("ep", base.format(u=fake.base_url)) as c:
                return await c.complete(REQ)

    assert asyncio.run(main()).content == "x"


# ---- status faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("run", LOOPS)
def test_429_with_retry_after_seconds(run: Runner) -> None:
    err, _ = run(_one(_fault("429", retry_after="7")))
    assert type(err) is RateLimited
    assert err.retryable
    assert err.status == 429
    assert err.retry_after == 7.0
    assert "injected fault 429" in str(err)


def test_429_with_retry_after_http_date() -> None:
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    err, _ = asyncio.run(_one(_fault("429", retry_after=date)))
    assert type(err) is RateLimited
    assert 28.0 <= err.retry_after <= 30.5


def test_429_without_retry_after() -> None:
    err, _ = asyncio.run(_one(_fault("429")))
    assert type(err) is RateLimited
    assert err.retry_after is None


@pytest.mark.parametrize("run", LOOPS)
@pytest.mark.parametrize("kind", ["500", "503"])
def test_5xx_retryable(run: Runner, kind: str) -> None:
    err, _ = run(_one(_fault(kind)))
    assert type(err) is RetryableError
    assert err.status == int(kind)
    assert f"HTTP {kind}" in str(err)
    assert f"injected fault {kind}" in str(err)  # the endpoint's own message is kept
    assert "injected fault" in err.body


@pytest.mark.parametrize("run", LOOPS)
def test_400_fatal_but_not_run_fatal(run: Runner) -> None:
    err, _ = run(_one(_fault("400")))
    assert type(err) is FatalEndpointError
    assert not err.retryable
    assert err.status == 400
    assert err.run_fatal is False
    assert "injected fault 400" in str(err)


@pytest.mark.parametrize("run", LOOPS)
def test_401_run_fatal(run: Runner) -> None:
    err, _ = run(_one(_fault("401")))
    assert type(err) is FatalEndpointError
    assert err.status == 401
    assert err.run_fatal is True
    assert "injected fault 401" in str(err)


# ---- body faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("run", LOOPS)
def test_slow_reply_past_timeout(run: Runner) -> None:
    t0 = time.monotonic()
    err, _ = run(_one(_fault("slow", delay=3.0), timeout=0.3))
    elapsed = time.monotonic() - t0
    assert type(err) is RetryableError
    assert "timeout" in str(err).lower()
    assert elapsed < 2.0  # the client gave up at its own timeout, not when the server answered


@pytest.mark.parametrize("run", LOOPS)
@pytest.mark.parametrize("kind", ["reset", "truncated", "malformed"])
def test_broken_bodies_retryable(run: Runner, kind: str) -> None:
    err, _ = run(_one(_fault(kind)))
    assert type(err) is RetryableError, repr(err)
    assert err.retryable


def test_malformed_body_kept_for_dead_letter() -> None:
    err, _ = asyncio.run(_one(_fault("malformed")))
    assert "not valid JSON" in str(err)
    assert "<not json" in err.body


def test_missing_usage_is_none() -> None:
    reply, _ = asyncio.run(_one(_fault("no_usage")))
    assert isinstance(reply, ChatReply)
    assert reply.usage is None
    assert reply.content.startswith("A reader of:")


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens

    async def main() -> Exception:
        async with EndpointClient(
            "ep", f"http://127.0.0.1:{port}", connect_timeout=1, request_timeout=2
        ) as c:
            try:
                await c.complete(REQ)
            except EndpointError as e:
                return e
        raise AssertionError("no error")

    err = asyncio.run(main())
    assert type(err) is RetryableError
    assert "ep" in str(err)


def test_every_fault_kind_maps_to_one_class() -> None:
    """Each fault in turn over one client: retryable vs fatal, as documented."""
    kinds = ["429", "500", "503", "reset", "malformed", "truncated", "400", "401", "no_usage"]
    fake = FakeOpenAI(faults=lambda n, body: Fault(kinds[n]) if n < len(kinds) else None)  # type: ignore[arg-type]

    async def main() -> list[Any]:
        out: list[Any] = []
        async with fake:
            async with EndpointClient("ep", fake.base_url, request_timeout=5) as c:
                for _ in range(len(kinds) + 1):
                    try:
                        out.append(await c.complete(REQ))
                    except EndpointError as e:
                        out.append(e)
        return out

    got = [type(x).__name__ for x in asyncio.run(main())]
    assert got == [
        "RateLimited",
        "RetryableError",
        "RetryableError",
        "RetryableError",
        "RetryableError",
        "RetryableError",
        "FatalEndpointError",
        "FatalEndpointError",
        "ChatReply",
        "ChatReply",
    ]


# ---- headers and connections --------------------------------------------------------------------


def test_ratelimit_headers_captured() -> None:
    fake = FakeOpenAI(reply="x", rpm=600, tpm=100_000, ratelimit_headers=True)
    reply, client = asyncio.run(_one(fake))
    assert isinstance(reply, ChatReply)
    assert client.ratelimit is not None
    rr, rt, reset_r, reset_t = client.ratelimit
    assert rr == 599  # the fake's bucket holds a minute: 600, one spent
    # charged at admission: prompt estimate (len('sys\nhello there') // 4 + 1 = 4) + max_tokens 16
    assert rt == 100_000 - 20
    assert reset_r is not None and 0 < reset_r <= 0.2  # "100ms"
    assert reset_t is not None and 0 < reset_t < 1


def test_keep_alive_one_connection_for_sequential_requests() -> None:
    fake = RecordingFake(reply="x")

    async def main() -> None:
        async with fake:
            async with EndpointClient("ep", fake.base_url) as c:
                for _ in range(6):
                    await c.complete(REQ)

    asyncio.run(main())
    assert len(fake.peers) == 6
    assert None not in fake.peers
    assert len(set(fake.peers)) == 1, fake.peers  # the same client port each time


def test_new_connection_after_a_reset() -> None:
    fake = RecordingFake(reply="x", faults=lambda n, body: Fault("reset") if n == 1 else None)

    async def main() -> list[Any]:
        out: list[Any] = []
        async with fake:
            async with EndpointClient("ep", fake.base_url) as c:
                for _ in range(3):
                    try:
                        out.append(await c.complete(REQ))
                    except RetryableError as e:
                        out.append(e)
        return out

    got = asyncio.run(main())
    assert [type(x) for x in got] == [ChatReply, RetryableError, ChatReply]
    assert fake.peers[0] == fake.peers[1] != fake.peers[2]
