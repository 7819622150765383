"""An in-process fake OpenAI-compatible server (aiohttp) that can inject faults and enforce budgets.

Routes: ``POST /v1/chat/completions`` (JSON or SSE with ``stream=true``), ``GET /v1/models``,
``GET /health`` and ``GET /metrics`` (vLLM-style gauges, own ``CollectorRegistry``).

Semantics worth knowing before writing a test against it:

* Request numbers passed to ``faults(n, body)`` count every chat request from 0, in arrival order.
* Token counts are an estimate, ``len(text) // 4 + 1``: prompt = all message contents joined by
  newlines, completion = the reply text. ``usage`` reports these.
* ``rpm`` / ``tpm`` are token buckets, refilled continuously at limit/60 per second and holding at
  most ``burst_s`` seconds of budget (60 s by default: a full minute, as OpenAI documents; pass
  ``burst_s=1`` for a strict per-second pace). Like OpenAI, TPM charges at admission the prompt
  estimate plus ``max_tokens`` (or ``max_completion_tokens``; the reply's estimate when neither is
  given) and never refunds. A request over budget gets 429 with ``Retry-After`` (whole seconds,
  rounded up) and ``retry-after-ms``; rejected requests are not charged.
* Injected status faults (429/500/503/400/401) answer at once, before the budget and the
  concurrency queue; body faults (slow/reset/truncated/malformed/no_usage) are served like a 200.
* ``max_concurrency`` serves N requests at once (after ``latency``) and queues the rest, which
  ``vllm:num_requests_waiting`` shows.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from engine.testing.fake_stats import Bucket, FakeStats, StatsCollector
from engine.testing.faults import DEFAULT_RANDOM_KINDS, ERROR_TYPES, FAULT_KINDS, STATUS_FAULTS, Fault

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FakeOpenAI",
    "FakeStats",
    "default_reply",
    "estimate_tokens",
    "format_reset",
    "run_in_thread",
]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def estimate_tokens(text: str) -> int:
    """Cheap token estimate used for usage and budgets: about four characters a token."""
    return len(text) // 4 + 1


def default_reply(body: dict[str, Any]) -> str:
    """A deterministic reply that differs per prompt, so dedup downstream sees distinct records."""
    return f"A reader of: {_prompt_text(body)[-80:].strip()}"


def format_reset(seconds: float) -> str:
    """Format a duration the way OpenAI's x-ratelimit-reset-* headers do: "20ms", "1s", "6m0s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    secs_txt = f"{secs:.3f}".rstrip("0").rstrip(".")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + (
        f"{secs_txt}s"
    )


def _prompt_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


class FakeOpenAI:
    """A fake OpenAI-compatible chat endpoint; see the module docstring for its semantics."""

    def __init__(
        self,
        *,
        reply: Callable[[dict[str, Any]], str] | str = default_reply,
        latency: float = 0.0,
        faults: Callable[[int, dict[str, Any]], Fault | None] | None = None,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] = DEFAULT_RANDOM_KINDS,
        seed: int = 0,
        rpm: int | None = None,
        tpm: int | None = None,
        burst_s: float = 60.0,
        max_concurrency: int | None = None,
        ratelimit_headers: bool = False,
        slow_delay: float = 2.0,
        model: str = "fake-model",
    ) -> None:
        for kind in fault_kinds:
            Fault(kind)  # type: ignore[arg-type]  # validates the name
        self.reply, self.latency, self.model = reply, latency, model
        self._faults, self._fault_rate, self._fault_kinds = faults, fault_rate, tuple(fault_kinds)
        self._rng = random.Random(seed)
        self._slow_delay = slow_delay
        self._limits = (rpm, tpm, burst_s)
        self._buckets: tuple[Bucket | None, Bucket | None] = (None, None)
        self._max_concurrency = max_concurrency
        self._sem: asyncio.Semaphore | None = None
        self._ratelimit_headers = ratelimit_headers
        self.stats = FakeStats()
        self.registry = CollectorRegistry()
        self.registry.register(StatsCollector(self))
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._t0 = 0.0
        self._n = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; returns the base URL, e.g. ``http://127.0.0.1:PORT`` (no ``/v1``)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        # Short shutdown: a stop() during a "slow" fault must not wait for it to finish.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=4096)
        await site.start()
        bound = self._runner.addresses[0]
        self.base_url = f"http://{host}:{bound[1]}"
        self._t0 = time.monotonic()
        rpm, tpm, burst_s = self._limits
        self._buckets = (
            Bucket(rpm, burst_s, self._t0) if rpm else None,
            Bucket(tpm, burst_s, self._t0) if tpm else None,
        )
        if self._max_concurrency:
            self._sem = asyncio.Semaphore(self._max_concurrency)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; in-flight requests get 0.25 s to finish, then are cancelled."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- small routes ----------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _models(self, request: web.Request) -> web.Response:
        data = {"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "fake-openai"}]}
        return web.Response(body=_encode(data), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    # -- chat --------------------------------------------------------------------------------------
    def _pick_fault(self, n: int, body: dict[str, Any]) -> Fault | None:
        if self._faults is not None:
            return self._faults(n, body)
        if self._fault_rate and self._rng.random() < self._fault_rate:
            kind = self._rng.choice(self._fault_kinds)
            return Fault(kind, retry_after="1" if kind == "429" else None,  # type: ignore[arg-type]
                         delay=self._slow_delay)
        return None

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              ) -> web.Response:
        self.stats.by_status[status] += 1
        return web.Response(status=status, body=_encode(payload), headers=headers,
                            content_type="application/json")

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None,
               etype: str | None = None) -> web.Response:
        default_type, code = ERROR_TYPES.get(status, ("server_error", None))
        err = {"message": message, "type": etype or default_type, "param": None, "code": code}
        return self._send(status, {"error": err}, headers)

    def _admit(self, tokens: int) -> tuple[float, str]:
        """Charge one request of ``tokens`` to the buckets; returns (wait, which) when over."""
        now = time.monotonic()
        req, tok = self._buckets
        waits = [(b.wait(now, amount), name) for b, amount, name in
                 ((req, 1, "requests"), (tok, tokens, "tokens")) if b is not None]
        worst = max(waits, default=(0.0, ""))
        if worst[0] > 0:
            return worst
        if req is not None:
            req.level -= 1
        if tok is not None:
            tok.level -= tokens
        return 0.0, ""

    def _ratelimit_info(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for bucket, name in zip(self._buckets, ("requests", "tokens"), strict=True):
            if bucket is not None:
                out[f"x-ratelimit-limit-{name}"] = str(bucket.limit)
                out[f"x-ratelimit-remaining-{name}"] = str(max(0, int(bucket.level)))
                out[f"x-ratelimit-reset-{name}"] = format_reset(bucket.reset_in())
        return out

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        n = self._n
        self._n += 1
        self.stats.requests += 1
        try:
            body = _decode(await request.read())
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("'messages' must be a list")
        except (msgspec.DecodeError, ValueError) as exc:
            return self._error(400, f"invalid request body: {exc}")
        fault = self._pick_fault(n, body)
        if fault is not None:
            self.stats.faults[fault.kind] += 1
            status = STATUS_FAULTS.get(fault.kind)
            if status is not None:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else None
                return self._error(status, f"injected fault {fault.kind}", extra)
        text = self.reply(body) if callable(self.reply) else self.reply
        prompt_tokens = estimate_tokens(_prompt_text(body))
        completion_tokens = estimate_tokens(text)
        headers: dict[str, str] = {}
        if self._buckets != (None, None):
            cap = body.get("max_tokens") or body.get("max_completion_tokens") or completion_tokens
            wait, which = self._admit(prompt_tokens + int(cap))
            if self._ratelimit_headers:
                headers = self._ratelimit_info()
            if wait > 0:
                self.stats.rate_limited += 1
                headers.update({"Retry-After": str(max(1, math.ceil(wait))),
                                "retry-after-ms": str(math.ceil(wait * 1000))})
                msg = f"Rate limit reached for {which} per min. Please try again in {wait:.3f}s."
                return self._error(429, msg, headers, etype=which)
        async with self._slot():
            if self.latency:
                await asyncio.sleep(self.latency)
            if fault is not None and fault.kind == "slow":
                await asyncio.sleep(fault.delay)
            kind = fault.kind if fault is not None else None
            usage = None if kind == "no_usage" else {
                "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}
            if body.get("stream"):
                resp = await self._stream(request, n, body, text, usage, kind, headers)
                if kind not in ("reset", "truncated"):
                    self._served(prompt_tokens, completion_tokens)
                return resp
            completion = {
                "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model") or self.model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
            }
            if usage is not None:
                completion["usage"] = usage
            payload = _encode(completion)
            if kind == "malformed":
                payload = payload[: len(payload) // 2] + b"<not json"
            elif kind in ("reset", "truncated"):
                return await self._cut(request, payload, headers, kind, "application/json")
            self._served(prompt_tokens, completion_tokens)
            return web.Response(body=payload, headers=headers, content_type="application/json")

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of ``max_concurrency`` slots (if set) and track running / waiting counts."""
        s = self.stats
        if self._sem is not None:
            s.waiting += 1
            try:
                await self._sem.acquire()
            finally:
                s.waiting -= 1
        s.running += 1
        s.max_concurrent = max(s.max_concurrent, s.running)
        try:
            yield
        finally:
            s.running -= 1
            if self._sem is not None:
                self._sem.release()

    def _served(self, prompt_tokens: int, completion_tokens: int) -> None:
        s = self.stats
        s.by_status[200] += 1
        s.served += 1
        s.prompt_tokens += prompt_tokens
        s.completion_tokens += completion_tokens
        s._per_second[int(time.monotonic() - self._t0)] += 1

    async def _cut(self, request: web.Request, payload: bytes, headers: dict[str, str],
                   kind: str, content_type: str) -> web.StreamResponse:
        """Send 200 headers and part of the body, then drop ("reset") or close the connection."""
        self.stats.by_status[200] += 1
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_type = content_type
        resp.content_length = len(payload) + (0 if kind == "reset" else 64)
        if kind == "truncated":
            resp.force_close()  # close after the short body, so the client sees EOF early
            await resp.prepare(request)
            await resp.write(payload)
            return resp
        await resp.prepare(request)
        await resp.write(payload[: len(payload) // 2])
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return resp

    async def _stream(self, request: web.Request, n: int, body: dict[str, Any], text: str,
                      usage: dict[str, int] | None, kind: str | None, headers: dict[str, str],
                      ) -> web.StreamResponse:
        """Answer as Server-Sent Events, one chunk per word, then usage if asked, then [DONE]."""
        base = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model") or self.model}
        words = text.split(" ")
        events = [{**base, "choices": [{"index": 0, "finish_reason": None, "delta": {
            **({"role": "assistant"} if i == 0 else {}),
            "content": w if i == 0 else " " + w}}]} for i, w in enumerate(words)]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None and (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": usage})
        data = b"".join(b"data: " + _encode(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        if kind == "malformed":
            data = data.replace(b"data: {", b"data: {oops", 1)
        elif kind in ("reset", "truncated"):
            return await self._cut(request, data, headers, kind, "text/event-stream")
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_type = "text/event-stream"
        await resp.prepare(request)
        await resp.write(data)
        return resp


@contextmanager
def run_in_thread(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> Iterator[FakeOpenAI]:
    """Run a FakeOpenAI on its own event loop in a daemon thread; ``.base_url`` is set on entry."""
    fake = FakeOpenAI(**kwargs)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fake.start(host, port), loop).result(timeout=30)
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


async def _serve_forever(args: argparse.Namespace) -> None:
    import signal

    fake = FakeOpenAI(latency=args.latency, fault_rate=args.fault_rate, seed=args.seed,
                      rpm=args.rpm, tpm=args.tpm, max_concurrency=args.max_concurrency,
                      ratelimit_headers=args.ratelimit_headers)
    url = await fake.start(args.host, args.port)
    print(f"fake-openai listening on {url}", flush=True)  # parents wait for this line
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m engine.testing.fake_openai --port P [--latency S] [--fault-rate R]``."""
    p = argparse.ArgumentParser(prog="python -m engine.testing.fake_openai", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds per reply")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of requests faulted")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rpm", type=int, default=None)
    p.add_argument("--tpm", type=int, default=None)
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--ratelimit-headers", action="store_true")
    args = p.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_forever(args))
    else:
        uvloop.run(_serve_forever(args))


if __name__ == "__main__":
    main()
