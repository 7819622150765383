"""One timed benchmark request: through the engine's own client, or streamed (SSE) for TTFT and ITL."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from engine.bench.workload import Prompt
from engine.client.http import EndpointClient
from engine.client.protocol import ChatRequest, Message
from engine.client.sse import DONE, SSEDecoder, decode_chunk
from engine.errors import EndpointError

_ENC = msgspec.json.Encoder()


class BenchRequest(ChatRequest, omit_defaults=True, kw_only=True):
    """A chat request with the two extras a benchmark needs (the engine's client encodes any Struct)."""

    ignore_eos: bool | None = None  # vLLM / llama.cpp: generate exactly max_tokens
    stream_options: dict[str, Any] | None = None


@dataclass
class Result:
    """What one request measured (seconds; token counts from the server's usage when it sent one)."""

    ok: bool
    latency: float = 0.0
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_reported: bool = True
    error: str = ""


def build(prompt: Prompt, model: str, *, stream: bool, ignore_eos: bool, temperature: float | None) -> BenchRequest:
    messages = [Message(role=m["role"], content=m.get("content")) for m in prompt.messages]
    return BenchRequest(model=model, messages=messages,
                        max_tokens=prompt.max_tokens, temperature=temperature, stream=stream,
                        ignore_eos=True if ignore_eos else None,
                        stream_options={"include_usage": True} if stream else None)


def _estimate(text: str) -> int:
    return len(text) // 4 + 1


def _error_kind(e: BaseException) -> str:
    if isinstance(e, EndpointError):
        status = f"HTTP {e.status}" if e.status and e.status != 200 else type(e).__name__
        return status
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    return type(e).__name__


async def send_plain(client: EndpointClient, req: BenchRequest, prompt: Prompt) -> Result:
    """Send through the engine's `EndpointClient` (what a pipeline run does)."""
    t0 = time.perf_counter()
    try:
        reply = await client.complete(req)
    except (EndpointError, asyncio.TimeoutError) as e:
        return Result(ok=False, latency=time.perf_counter() - t0, error=_error_kind(e))
    latency = time.perf_counter() - t0
    if reply.usage is not None:
        return Result(ok=True, latency=latency, prompt_tokens=reply.usage.prompt_tokens,
                      completion_tokens=reply.usage.completion_tokens)
    return Result(ok=True, latency=latency, prompt_tokens=prompt.approx_input_tokens,
                  completion_tokens=_estimate(reply.content), usage_reported=False)


class Streamer:
    """Streams chat completions over one aiohttp session and times each content chunk."""

    def __init__(self, base_url: str, *, api_key: str | None, timeout: float, connections: int,
                 keepalive: bool = True) -> None:
        url = base_url.rstrip("/")
        self.url = (url if url.endswith("/v1") else url + "/v1") + "/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Streamer:
        connector = aiohttp.TCPConnector(limit=self._connections, force_close=not self._keepalive)
        self._session = aiohttp.ClientSession(connector=connector,
                                              timeout=self._timeout, headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, req: BenchRequest, prompt: Prompt) -> Result:
        """Stream one request; a request that could not even be written to a kept-alive
        connection (llama.cpp's server closes it after each stream without saying so) is sent
        once more on a fresh one, timed from the second try."""
        body = _ENC.encode(req)
        for attempt in (1, 2):
            res, stale = await self._send_once(body, prompt)
            if not stale or attempt == 2:
                return res
        raise AssertionError("unreachable")

    async def _send_once(self, body: bytes, prompt: Prompt) -> tuple[Result, bool]:
        assert self._session is not None
        t0 = time.perf_counter()
        res = Result(ok=False)
        started = False
        try:
            async with self._session.post(self.url, data=body) as resp:
                started = True
                if resp.status != 200:
                    await resp.read()
                    res.error = f"HTTP {resp.status}"
                    res.latency = time.perf_counter() - t0
                    return res, False
                await self._read(resp, t0, res, prompt)
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as e:
            if not started:
                res.error = "connection closed before the request was sent"
                res.latency = time.perf_counter() - t0
                return res, True
            res.error = type(e).__name__
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            res.error = "timeout" if isinstance(e, asyncio.TimeoutError) else type(e).__name__
        except ValueError as e:  # msgspec.DecodeError: a chunk that is not JSON
            res.error = f"bad chunk: {str(e)[:80]}"
        res.latency = time.perf_counter() - t0
        return res, False

    async def _read(self, resp: aiohttp.ClientResponse, t0: float, res: Result, prompt: Prompt) -> None:
        dec = SSEDecoder()
        last = t0
        chunks = 0
        done = False
        async for raw in resp.content.iter_any():
            for ev in dec.feed(raw):
                if ev.data == DONE:
                    done = True
                    break
                chunk = decode_chunk(ev.data)
                if chunk.usage is not None:
                    res.prompt_tokens = chunk.usage.prompt_tokens
                    res.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    piece = choice.delta.content or choice.delta.reasoning_content
                    if piece:
                        now = time.perf_counter()
                        if res.ttft is None:
                            res.ttft = now - t0
                        else:
                            res.itl.append(now - last)
                        last = now
                        chunks += 1
            if done:
                break
        if not done:
            res.error = "stream ended without [DONE]"
            return
        res.ok = True
        if res.completion_tokens == 0 and res.prompt_tokens == 0:  # no usage sent: estimate both
            res.usage_reported = False
            res.completion_tokens = chunks  # servers send about one token per chunk
            res.prompt_tokens = prompt.approx_input_tokens
