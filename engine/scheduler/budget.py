"""The token-budget limiter's arithmetic: pure, no I/O, no clock of its own.

Two token buckets (requests and tokens per minute), a cap on requests in flight, and a
cool-down shared by the endpoint after a 429. `reserve(now, tokens)` either admits a
request (returns 0.0 and charges it) or says how long to wait; `settle` reconciles the
charge with the reply's real usage (refund or extra charge).

The buckets hold one second of budget by default: a full minute's burst at start would
let a client that keeps to the server's per-minute limit still trip a server that
counts over a sliding window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

INF = math.inf


@dataclass
class Bucket:
    """A token bucket: `rate` units per second, holding at most `capacity`."""

    rate: float
    capacity: float
    level: float = 0.0
    stamp: float = 0.0

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, now: float, amount: float) -> float:
        """Seconds until `amount` is available (requests above capacity wait for a full bucket)."""
        self.refill(now)
        need = min(amount, self.capacity)
        if self.level >= need:
            return 0.0
        return (need - self.level) / self.rate


@dataclass
class BudgetStats:
    """Live statistics of one limiter."""

    admitted: int = 0
    in_flight: int = 0
    rate_limited: int = 0
    tokens_reserved: int = 0
    tokens_used: int = 0
    cooldown_until: float = 0.0


@dataclass
class Budget:
    """Requests/min, tokens/min and max-in-flight for one endpoint (0 = unlimited)."""

    requests_per_minute: float = 0.0
    tokens_per_minute: float = 0.0
    max_in_flight: int = 8
    burst_seconds: float = 1.0
    default_cooldown: float = 1.0
    stats: BudgetStats = field(default_factory=BudgetStats)

    def __post_init__(self) -> None:
        self._req = self._bucket(self.requests_per_minute, minimum=1.0)
        self._tok = self._bucket(self.tokens_per_minute, minimum=0.0)

    def _bucket(self, per_minute: float, minimum: float) -> Bucket | None:
        if per_minute <= 0:
            return None
        rate = per_minute / 60.0
        cap = max(minimum, rate * self.burst_seconds)
        return Bucket(rate=rate, capacity=cap, level=cap, stamp=-INF)

    def start(self, now: float) -> None:
        """Anchor the buckets' clocks (they start full)."""
        for b in (self._req, self._tok):
            if b is not None:
                b.stamp = now

    def reserve(self, now: float, tokens: int) -> float:
        """Admit a request of `tokens` estimated tokens now (returns 0.0) or say how long to wait.

        INF means "wait until a request in flight finishes".
        """
        s = self.stats
        if s.cooldown_until > now:
            return s.cooldown_until - now
        if s.in_flight >= self.max_in_flight:
            return INF
        delay = 0.0
        if self._req is not None:
            delay = self._req.wait(now, 1.0)
        if self._tok is not None:
            delay = max(delay, self._tok.wait(now, tokens))
        if delay > 0:
            return delay
        if self._req is not None:
            self._req.level -= 1.0
        if self._tok is not None:
            self._tok.level -= tokens
        s.in_flight += 1
        s.admitted += 1
        s.tokens_reserved += tokens
        return 0.0

    def settle(self, now: float, reserved: int, used: int | None) -> None:
        """A request finished: free its slot; charge its real usage instead of the estimate."""
        self.stats.in_flight -= 1
        if used is None:
            used = reserved
        self.stats.tokens_used += used
        if self._tok is not None:
            self._tok.refill(now)
            # a refund may not overfill the bucket; an extra charge may drive it below zero
            self._tok.level = min(self._tok.capacity, self._tok.level + reserved - used)

    def rate_limited(self, now: float, retry_after: float | None) -> None:
        """A 429: every request to this endpoint waits out one shared cool-down."""
        self.stats.rate_limited += 1
        pause = retry_after if retry_after is not None and retry_after >= 0 else self.default_cooldown
        self.stats.cooldown_until = max(self.stats.cooldown_until, now + pause)
        for b in (self._req, self._tok):
            if b is not None:
                b.refill(now)
                b.level = min(b.level, 0.0)

    def observe_headers(self, now: float, remaining_requests: float | None, remaining_tokens: float | None,
                        reset_requests: float | None, reset_tokens: float | None) -> None:
        """Trust the server's `x-ratelimit-*` view where it is stricter than ours."""
        for bucket, remaining, reset in ((self._req, remaining_requests, reset_requests),
                                         (self._tok, remaining_tokens, reset_tokens)):
            if remaining is None:
                continue
            if bucket is not None:
                bucket.refill(now)
                bucket.level = min(bucket.level, remaining)
            if remaining <= 0 and reset is not None:
                self.stats.cooldown_until = max(self.stats.cooldown_until, now + reset)
