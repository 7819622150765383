"""One OpenAI-compatible endpoint over aiohttp: one session, keep-alive, errors mapped once.

Every failure leaves this module as an `engine.errors` class: `RetryableError` (429, 5xx,
timeouts, resets, truncated or malformed bodies) or `FatalEndpointError` (400/401/403/404,
a reply that is valid JSON but not a chat completion). The endpoint's message is kept.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
import msgspec

from engine.client.protocol import ChatReply, ChatRequest, ChatResponse
from engine.errors import FatalEndpointError, RateLimited, RetryableError
from engine.scheduler import headers as hdr

_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder(ChatResponse)
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
# statuses that mean no request to this endpoint can succeed: stop the run, do not dead-letter everything
RUN_FATAL_STATUS = {401, 403, 404}


class EndpointClient:
    """Sends chat completions to one server; `ratelimit` holds the last x-ratelimit-* view."""

    def __init__(self, name: str, base_url: str, *, api_key: str | None = None,
                 connect_timeout: float = 10.0, request_timeout: float = 120.0,
                 max_connections: int = 100, headers: dict[str, str] | None = None) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.url = self.base_url + "/chat/completions"
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self.ratelimit: tuple[float | None, float | None, float | None, float | None] | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=60, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              headers=self._headers, skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> EndpointClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def complete(self, request: ChatRequest) -> ChatReply:
        """POST one chat completion and return its reply, or raise a mapped error."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        body = _ENC.encode(request)
        t0 = time.perf_counter()
        try:
            async with self._session.post(self.url, data=body) as resp:
                raw = await resp.read()
                status = resp.status
                if "x-ratelimit-remaining-requests" in resp.headers or "x-ratelimit-remaining-tokens" in resp.headers:
                    self.ratelimit = hdr.ratelimit(resp.headers)
                if status != 200:
                    raise _status_error(self.name, status, resp.headers, raw)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            raise RetryableError(f"{self.name}: no reply within {self._timeout.total:g}s (timeout)") from None
        except aiohttp.ClientPayloadError as e:
            raise RetryableError(f"{self.name}: reply body cut short ({e})") from None
        except (aiohttp.ClientConnectionError, ConnectionError) as e:
            raise RetryableError(f"{self.name}: connection failed: {e}") from None
        except aiohttp.ClientError as e:
            raise RetryableError(f"{self.name}: {type(e).__name__}: {e}") from None
        return _decode(self.name, raw, time.perf_counter() - t0)


def _status_error(name: str, status: int, headers: Any, raw: bytes) -> Exception:
    text = raw.decode("utf-8", "replace")
    message = _error_message(text)
    where = f"{name}: HTTP {status}: {message}"
    if status == 429:
        return RateLimited(where, retry_after=hdr.retry_after(headers.get("Retry-After")), body=text)
    if status in RETRY_STATUS or status >= 500:
        return RetryableError(where, status=status, body=text)
    err = FatalEndpointError(where, status=status, body=text)
    err.run_fatal = status in RUN_FATAL_STATUS  # type: ignore[attr-defined]
    return err


def _error_message(text: str) -> str:
    try:
        doc = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text.strip()[:300] or "(empty body)"
    if isinstance(doc, dict):
        err = doc.get("error", doc)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:300]
        return str(err)[:300]
    return text[:300]


def _decode(name: str, raw: bytes, latency: float) -> ChatReply:
    try:
        resp = _DEC.decode(raw)
    except msgspec.ValidationError as e:
        raise FatalEndpointError(f"{name}: reply is not a chat completion: {e}", status=200,
                                 body=raw.decode("utf-8", "replace")) from None
    except msgspec.DecodeError as e:
        # bad JSON on a 200 is almost always a cut or mangled body: worth another try
        raise RetryableError(f"{name}: reply is not valid JSON: {e}", status=200,
                             body=raw.decode("utf-8", "replace")) from None
    if not resp.choices:
        raise RetryableError(f"{name}: reply has no choices", status=200, body=raw.decode("utf-8", "replace"))
    choice = resp.choices[0]
    content = choice.message.content or ""
    return ChatReply(content=content, model=resp.model, usage=resp.usage,
                     finish_reason=choice.finish_reason, latency=latency)


def api_key_from_env(var: str) -> str | None:
    """The API key from the named environment variable (never stored anywhere else)."""
    if not var:
        return None
    return os.environ.get(var) or None
