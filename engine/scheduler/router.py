"""Route requests over several endpoints: least loaded first, overflow by priority, breakers, adaptive limits.

A `Router` holds one `Member` per server (its client, `Budget`, `CircuitBreaker` and,
optionally, an `AdaptiveController` fed by a `MetricsProbe`). `acquire(tokens)` waits in
FIFO order until some member may take the request and returns a `Lease`; the caller sends
the request with `lease.call(lease.client.complete, request)` and ends the lease with
`lease.ok(reply, max_tokens)` or `lease.failed(exc)`; `complete(request, tokens)` does all
of that in one call. A router with one member behaves like the single-endpoint `Limiter`
(the same `Budget` arithmetic decides).

Choice of member: the lowest priority number that has a healthy member with room; within
it, the one with the lowest in-flight / limit. A higher priority number (overflow, e.g. a
hosted API behind a local server) gets work only while every lower one is full or out.

Health: 5xx, timeouts and resets count against a member's breaker; 429s cut its adaptive
limit and start its budget's cool-down but say nothing about health. When a breaker opens,
the member's other requests in flight are aborted (`call` raises `EndpointDrained`, a
`RetryableError`), and `failed` tells the caller whether another member could take the
work now, so the caller can re-queue it at once, once (`failover`), instead of backing off.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import msgspec

from engine.client.probe import MetricsProbe, ProbeStats
from engine.client.protocol import ChatReply, ChatRequest
from engine.scheduler.adaptive import AdaptiveController, AdaptiveStats, Outcome
from engine.scheduler.breaker import BreakerState, BreakerStats, CircuitBreaker
from engine.scheduler.budget import Budget, BudgetStats
from engine.scheduler.lease import Lease


class ChatClient(Protocol):
    """What the router needs of a client (`engine.client.http.EndpointClient` is one)."""

    name: str
    base_url: str
    ratelimit: tuple[float | None, float | None, float | None, float | None] | None

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def complete(self, request: ChatRequest) -> ChatReply: ...


@dataclass
class MemberCounts:
    sent: int = 0
    ok: int = 0
    failed: int = 0  # counted against health
    overloaded: int = 0  # 429
    neutral: int = 0  # 400s, cancelled
    drained: int = 0  # aborted when the breaker opened


@dataclass
class MemberStats:
    """Live statistics of one member."""

    name: str
    priority: int
    state: str
    in_flight: int
    limit: int
    cap: int
    counts: MemberCounts
    budget: BudgetStats
    breaker: BreakerStats
    adaptive: AdaptiveStats | None
    probe: ProbeStats | None


@dataclass
class Member:
    """One server behind a router. `budget.max_in_flight` is the config's fixed cap."""

    name: str
    client: ChatClient
    budget: Budget
    model: str = ""  # "" = keep the request's model
    priority: int = 0
    tpm_counts: str = "max_tokens"
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    adaptive: AdaptiveController | None = None
    probe: MetricsProbe | None = None
    counts: MemberCounts = field(default_factory=MemberCounts)

    def __post_init__(self) -> None:
        self.cap = self.budget.max_in_flight
        self.leases: set[Lease] = set()
        if self.adaptive is not None:
            self.adaptive.set_cap(min(self.adaptive.cap, self.cap))
        self.apply_limit()

    def apply_limit(self) -> bool:
        """Copy the adaptive limit into the budget; True when it rose (waiters may proceed)."""
        if self.adaptive is None:
            return False
        old = self.budget.max_in_flight
        self.budget.max_in_flight = max(1, min(self.cap, self.adaptive.limit))
        return self.budget.max_in_flight > old

    def load(self) -> float:
        return self.budget.stats.in_flight / max(1, self.budget.max_in_flight)

    def statistics(self) -> MemberStats:
        return MemberStats(self.name, self.priority, self.breaker.state.value, self.budget.stats.in_flight,
                           self.budget.max_in_flight, self.cap, self.counts, self.budget.stats,
                           self.breaker.statistics(), self.adaptive.statistics() if self.adaptive else None,
                           self.probe.statistics() if self.probe else None)


@dataclass
class RouterStats:
    """Live statistics of a router: one entry per member."""

    name: str
    members: dict[str, MemberStats]
    waiting: int


class Router:
    """Spreads requests over members; see the module docstring."""

    def __init__(self, name: str, members: Sequence[Member], *, scrape_interval: float = 0.5,
                 abort_on_open: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        if not members:
            raise ValueError("a router needs at least one member")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must differ: {names}")
        self.name = name
        self.members = list(members)
        self.now = clock
        self.scrape_interval = scrape_interval
        self.abort_on_open = abort_on_open
        self._lock = asyncio.Lock()  # FIFO: only the head of the line waits for room
        self._changed = asyncio.Event()
        self._waiting = 0
        self._rr = 0  # rotates ties between equally loaded members
        self._rng = random.Random()
        now = clock()
        for m in self.members:
            m.budget.start(now)

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        for m in self.members:
            await m.client.start()

    async def close(self) -> None:
        for m in self.members:
            await m.client.close()
            if m.probe is not None:
                await m.probe.close()

    async def run(self) -> None:
        """Scrape each member's queue metrics every `scrape_interval` seconds, until cancelled."""
        scraped = [m for m in self.members if m.probe is not None and m.adaptive is not None]
        if not scraped:
            return
        async with anyio.create_task_group() as tg:
            for m in scraped:
                tg.start_soon(self._scrape_loop, m)

    async def _scrape_loop(self, m: Member) -> None:
        assert m.probe is not None and m.adaptive is not None
        while True:
            sample = await m.probe.scrape()
            if sample is not None:
                m.adaptive.on_queue(self.now(), sample.waiting, sample.running)
                if m.apply_limit():
                    self._changed.set()
            # jitter: a scrape locked in phase with the server's batches would see the same instant every time
            await anyio.sleep(self.scrape_interval * self._rng.uniform(0.7, 1.3))

    # ---- admission -----------------------------------------------------------------------------
    def capacity(self) -> int:
        """The most requests that may ever be in flight (sum of the members' fixed caps)."""
        return sum(m.cap for m in self.members)

    async def acquire(self, tokens: int, avoid: str | None = None) -> Lease:
        """Wait until a member may take a request of `tokens` estimated tokens; prefer one not named `avoid`."""
        if not self._lock.locked():
            lease, _ = self._pick(tokens, avoid)
            if lease is not None:
                return lease
        self._waiting += 1
        try:
            async with self._lock:
                while True:
                    self._changed.clear()
                    lease, delay = self._pick(tokens, avoid)
                    if lease is not None:
                        return lease
                    with anyio.move_on_after(None if math.isinf(delay) else delay):
                        await self._changed.wait()
        finally:
            self._waiting -= 1

    def _pick(self, tokens: int, avoid: str | None) -> tuple[Lease | None, float]:
        now = self.now()
        if avoid is not None and not any(m.name != avoid and m.breaker.state is BreakerState.CLOSED
                                         for m in self.members):
            avoid = None  # no healthy alternative: the avoided member is better than none
        delay = math.inf
        self._rr += 1
        n = len(self.members)
        full: list[Member] = []
        for prio in sorted({m.priority for m in self.members}):
            tier = [m for m in self.members if m.priority == prio and m.name != avoid]
            tier.sort(key=lambda m: (m.load(), (self.members.index(m) - self._rr) % n))
            for m in tier:
                if not m.breaker.available(now):
                    delay = min(delay, m.breaker.wait(now))
                    continue
                d = m.budget.reserve(now, tokens)
                if d == 0.0:
                    return self._lease(m, now, tokens), 0.0
                if math.isinf(d):
                    full.append(m)
                delay = min(delay, d)
        for m in full:  # work is waiting on their in-flight limits: those limits are what binds
            if m.adaptive is not None:
                m.adaptive.on_blocked(now)
        return None, delay

    def _lease(self, m: Member, now: float, tokens: int) -> Lease:
        probe = m.breaker.admit(now)
        sent_with = m.adaptive.on_send(now) if m.adaptive is not None else m.budget.stats.in_flight
        m.counts.sent += 1
        lease = Lease(self, m, tokens, probe, sent_with, now)
        m.leases.add(lease)
        return lease

    async def complete(self, request: ChatRequest, tokens: int, avoid: str | None = None) -> ChatReply:
        """Acquire, send (with the member's model), and end the lease: the one-call path.

        An error is re-raised with two attributes added: ``endpoint`` (the member's name) and
        ``failover`` (True when another member could take the work now; see `Lease.failed`).
        """
        lease = await self.acquire(tokens, avoid)
        if lease.model and lease.model != request.model:
            request = msgspec.structs.replace(request, model=lease.model)
        try:
            reply = await lease.call(lease.client.complete, request)
        except BaseException as e:
            failover = lease.failed(e)
            if isinstance(e, Exception):
                e.endpoint = lease.name  # type: ignore[attr-defined]
                e.failover = failover  # type: ignore[attr-defined]
            raise
        lease.ok(reply, request.max_tokens)
        return reply

    # ---- feedback ------------------------------------------------------------------------------
    def sample(self, m: Member, now: float, outcome: Outcome, latency: float | None, sent_with: int) -> None:
        if m.adaptive is not None:
            m.adaptive.on_sample(now, outcome, latency, sent_with)
            m.apply_limit()
        self._changed.set()  # a slot was freed (or a limit moved): wake the head of the line

    def drain(self, m: Member) -> None:
        """The member's breaker opened: abort its requests in flight (they are retried elsewhere)."""
        if self.abort_on_open:
            for lease in list(m.leases):
                lease.drain()

    def has_alternative(self, m: Member) -> bool:
        """Whether another member is in service (closed breaker) to take work from `m`."""
        return any(o is not m and o.breaker.state is BreakerState.CLOSED for o in self.members)

    def statistics(self) -> RouterStats:
        return RouterStats(self.name, {m.name: m.statistics() for m in self.members}, self._waiting)
