"""A circuit breaker for one endpoint: a pure state machine; the caller passes the time in.

    CLOSED ──(N failures in a row, or failure rate >= R over the last W outcomes)──▶ OPEN
    OPEN ──(cool-down over)──▶ HALF_OPEN: admits exactly one probe request
    HALF_OPEN ──probe succeeds──▶ CLOSED (cool-down back to its base)
    HALF_OPEN ──probe fails──▶ OPEN (cool-down x multiplier, up to a cap)

Only health counts: the caller reports a 5xx, timeout or reset as `failure`, a reply as
`success`, and anything that says nothing about the endpoint's health (a 429, a 400, a
cancelled request) as `release`. Outcomes of requests sent before the breaker opened are
ignored while it is open or half-open: only the probe decides.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    """When to trip and how long to stay out."""

    failure_threshold: int = 5  # consecutive failures that open the breaker
    window: int = 20  # outcomes kept for the failure rate
    failure_rate: float = 0.5  # open when this share of the window failed ...
    min_calls: int = 10  # ... and the window holds at least this many outcomes
    cooldown: float = 1.0  # seconds open before the first probe
    cooldown_max: float = 60.0
    multiplier: float = 2.0  # cool-down growth after each failed probe


@dataclass
class BreakerStats:
    """Live statistics of one breaker."""

    state: str = BreakerState.CLOSED.value
    consecutive_failures: int = 0
    successes: int = 0
    failures: int = 0
    trips: int = 0  # CLOSED -> OPEN
    probes: int = 0
    reopened: int = 0  # failed probes
    open_until: float = 0.0
    cooldown: float = 0.0


@dataclass
class CircuitBreaker:
    """Takes an endpoint out after repeated failures and lets one probe back in after a cool-down."""

    settings: BreakerSettings = field(default_factory=BreakerSettings)
    stats: BreakerStats = field(default_factory=BreakerStats)

    def __post_init__(self) -> None:
        self._state = BreakerState.CLOSED
        self._window: deque[bool] = deque(maxlen=self.settings.window)
        self._cooldown = self.settings.cooldown
        self._open_until = 0.0
        self._probing = False
        self.stats.cooldown = self._cooldown

    @property
    def state(self) -> BreakerState:
        return self._state

    def available(self, now: float) -> bool:
        """Whether a request may be sent now (an open breaker turns half-open when its cool-down is over)."""
        if self._state is BreakerState.OPEN and now >= self._open_until:
            self._set(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN:
            return not self._probing
        return self._state is BreakerState.CLOSED

    def wait(self, now: float) -> float:
        """Seconds until `available` may turn true: 0 now, INF while a probe is out."""
        if self.available(now):
            return 0.0
        if self._state is BreakerState.OPEN:
            return self._open_until - now
        return math.inf

    def admit(self, now: float) -> bool:
        """Record that a request was sent; returns True when it is the half-open probe."""
        if not self.available(now):
            raise RuntimeError("CircuitBreaker.admit() while unavailable; call available() first")
        if self._state is BreakerState.HALF_OPEN:
            self._probing = True
            self.stats.probes += 1
            return True
        return False

    def success(self, now: float, probe: bool = False) -> None:
        """A request answered."""
        if self._state is BreakerState.HALF_OPEN and probe:
            self._probing = False
            self._cooldown = self.settings.cooldown
            self._window.clear()
            self._set(BreakerState.CLOSED)
        if self._state is not BreakerState.CLOSED:
            return
        self.stats.successes += 1
        self.stats.consecutive_failures = 0
        self._window.append(True)

    def failure(self, now: float, probe: bool = False) -> None:
        """A request failed in a way that speaks of the endpoint's health (5xx, timeout, reset)."""
        s = self.settings
        if self._state is BreakerState.HALF_OPEN and probe:
            self._probing = False
            self.stats.reopened += 1
            self._cooldown = min(s.cooldown_max, self._cooldown * s.multiplier)
            self._open(now)
            return
        if self._state is not BreakerState.CLOSED:
            return
        self.stats.failures += 1
        self.stats.consecutive_failures += 1
        self._window.append(False)
        failed = self._window.count(False)
        if (self.stats.consecutive_failures >= s.failure_threshold
                or (len(self._window) >= s.min_calls and failed >= s.failure_rate * len(self._window))):
            self.stats.trips += 1
            self._open(now)

    def release(self, now: float, probe: bool = False) -> None:
        """A request ended without a verdict on health (429, 400, cancelled): free the probe slot."""
        if probe and self._state is BreakerState.HALF_OPEN:
            self._probing = False

    def statistics(self) -> BreakerStats:
        self.stats.open_until = self._open_until
        self.stats.cooldown = self._cooldown
        return self.stats

    def _open(self, now: float) -> None:
        self._open_until = now + self._cooldown
        self.stats.consecutive_failures = 0
        self._window.clear()
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self._state = state
        self.stats.state = state.value
