"""A lease: the right to send one request to one member of a router, ended exactly once.

`ok` and `failed` settle the request's tokens with the member's budget and tell its breaker
and adaptive limit; `call` awaits the request and turns a drain (the member taken out of
service while the request was in flight) into `EndpointDrained`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from engine.client.protocol import ChatReply
from engine.errors import EndpointDrained, FatalEndpointError, RateLimited, RetryableError
from engine.scheduler.adaptive import Outcome
from engine.scheduler.breaker import BreakerState

if TYPE_CHECKING:
    from engine.scheduler.router import ChatClient, Member, Router

__all__ = ["Lease"]

T = TypeVar("T")


def _cancelling(task: asyncio.Task[Any] | None) -> int:
    """How many cancels are pending on ``task`` (0 before Python 3.11, which does not count them)."""
    return task.cancelling() if task is not None and hasattr(task, "cancelling") else 0


def _uncancel(task: asyncio.Task[Any] | None) -> int:
    """Take one cancel back from ``task``; the cancels still pending (0 before Python 3.11)."""
    return task.uncancel() if task is not None and hasattr(task, "uncancel") else 0


class Lease:
    """The right to send one request to one member; end it with `ok` or `failed` exactly once."""

    def __init__(self, router: Router, member: Member, tokens: int, probe: bool, sent_with: int,
                 started: float) -> None:
        self.router = router
        self.member = member
        self.tokens = tokens
        self.probe = probe
        self.sent_with = sent_with
        self.started = started
        self.drained = False
        self._task: asyncio.Task[Any] | None = None  # the task awaiting the request, while it does
        self._cancelled = False  # drain() cancelled that task
        self._ended = False

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def client(self) -> ChatClient:
        return self.member.client

    @property
    def model(self) -> str:
        return self.member.model

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await `fn(*args)`; raise `EndpointDrained` if the member is taken out meanwhile.

        A plain task cancel, taken back with `Task.uncancel` (an anyio CancelScope per request
        cost a tenth of the engine's CPU); a cancel from elsewhere (shutdown) still propagates.
        """
        if self.drained:
            raise self._drained_error()
        task = self._task = asyncio.current_task()
        base = _cancelling(task)  # cancels already requested from elsewhere
        landed = False
        try:
            return await fn(*args)
        except asyncio.CancelledError:
            if self._cancelled:
                landed = True
                if _uncancel(task) <= base:  # ours alone: the member was drained
                    raise self._drained_error() from None
            raise
        finally:
            self._task = None
            if self._cancelled and not landed:
                _uncancel(task)  # fn swallowed our cancel: take it back, or it would stay counted on the task

    def _drained_error(self) -> EndpointDrained:
        return EndpointDrained(f"{self.name}: taken out of service (circuit open) while the request was in flight")

    def drain(self) -> None:
        self.drained = True
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    def ok(self, reply: ChatReply, max_tokens: int | None = None) -> None:
        """The request got a reply: settle its tokens, and tell the breaker and the limit."""
        if not self._end():
            return
        m, now = self.member, self.router.now()
        m.counts.ok += 1
        m.budget.settle(now, self.tokens, _charged(reply, max_tokens, m.tpm_counts))
        if m.client.ratelimit is not None:
            m.budget.observe_headers(now, *m.client.ratelimit)
            m.client.ratelimit = None
        m.breaker.success(now, self.probe)
        self.router.sample(m, now, Outcome.OK, now - self.started, self.sent_with)

    def failed(self, exc: BaseException) -> bool:
        """The request failed with `exc`; returns True when another member could take the work now."""
        if not self._end():
            return False
        m, now = self.member, self.router.now()
        outcome = Outcome.NEUTRAL
        if self.drained or isinstance(exc, EndpointDrained):
            m.counts.drained += 1
            m.budget.settle(now, self.tokens, None)
            m.breaker.release(now, self.probe)
        elif isinstance(exc, RateLimited):
            m.counts.overloaded += 1
            m.budget.settle(now, self.tokens, 0)  # a 429 used no tokens
            m.budget.rate_limited(now, exc.retry_after)
            m.breaker.release(now, self.probe)
            outcome = Outcome.OVERLOAD
        elif isinstance(exc, RetryableError):
            m.counts.failed += 1
            m.budget.settle(now, self.tokens, None)  # it may have used tokens: keep the estimate
            m.breaker.failure(now, self.probe)
            # a mangled body on a 200 speaks of health, not of load
            outcome = Outcome.NEUTRAL if exc.status == 200 else Outcome.FAILURE
        else:
            m.counts.neutral += 1
            m.budget.settle(now, self.tokens, 0 if isinstance(exc, FatalEndpointError) else None)
            m.breaker.release(now, self.probe)
        self.router.sample(m, now, outcome, None, self.sent_with)
        if m.breaker.state is BreakerState.OPEN:
            self.router.drain(m)
        return isinstance(exc, RetryableError) and self.router.has_alternative(m)

    def _end(self) -> bool:
        if self._ended:
            return False
        self._ended = True
        self.member.leases.discard(self)
        return True


def _charged(reply: ChatReply, max_tokens: int | None, tpm_counts: str) -> int | None:
    """Tokens the server counted against its budget, per `tpm_counts` (None: unknown)."""
    u = reply.usage
    if u is None:
        return None
    if tpm_counts == "usage":
        return u.total_tokens
    return u.prompt_tokens + (max_tokens or u.completion_tokens)
