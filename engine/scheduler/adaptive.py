"""Adaptive concurrency for one endpoint: a pure controller; the router feeds it times and outcomes.

The choice, and why. A self-hosted LLM server (vLLM, SGLang, llama.cpp) runs a fixed number of
sequences at once and queues the rest; past that point more in-flight requests add only
latency. The controller steers on an estimate of that *queue*, aiming to keep it small and
non-zero (``queue_fraction`` of the limit, at least one request): a server that always has
one more request waiting never idles, and one that has few waiting never makes requests
wait long. The estimate comes from one of two places:

* **Server metrics** (preferred). vLLM's ``vllm:num_requests_waiting``, SGLang's
  ``sglang:num_queue_reqs``, llama.cpp's ``llamacpp:requests_deferred``, scraped by
  `engine.client.probe` and passed to `on_queue`. This is exact, and it works for servers
  whose latency grows with batch size even below capacity (which fools latency-based
  limiters). Only our share of the queue is attributed to us.
* **Latency** (when no fresh metrics). TCP Vegas's estimate: a request sent with ``c`` in
  flight whose latency is ``rtt`` against a no-queue latency ``base`` saw about
  ``c * (1 - base / rtt)`` requests queued ahead of it. ``base`` is the lowest latency seen;
  it can only fall, so (like BBR's ProbeRTT) the controller halves its limit for about two
  round trips every ``probe_interval`` seconds to measure it afresh.

Why not AIMD alone or Netflix's Gradient2: AIMD on errors never finds the knee of a server
that queues instead of failing (it grows until requests time out), and Gradient2's
long-term latency average follows the short one under a steady load, so its limit creeps
up without bound. Both appear here only in their safe roles: slow start (+1 per reply,
doubling each round trip) until the first queue signal, and a multiplicative cut on a
429 (x0.5) or a 5xx/timeout (x0.75), at most once per round trip. Between those, a
proportional step toward the queue target, once per round trip (or per scrape), with no
growth while the caller cannot fill the current limit (app-limited).

A fixed limit from config (``max_limit``) still caps the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum


class Outcome(str, Enum):
    """How a request ended, as far as load control and health care."""

    OK = "ok"  # a reply
    OVERLOAD = "overload"  # 429: the server asks us to slow down
    FAILURE = "failure"  # 5xx, timeout, reset: unhealthy or overloaded
    NEUTRAL = "neutral"  # 400, cancelled, ...: says nothing about load


@dataclass(frozen=True)
class AdaptiveSettings:
    """Knobs of the controller; the defaults suit LLM servers from 4 to 1000 slots."""

    initial_limit: float = 4.0
    min_limit: float = 1.0
    max_limit: float = 4096.0  # the config's max_in_flight caps it further
    queue_fraction: float = 0.05  # target queue = this share of the limit, at least 1 request
    gain: float = 0.5  # share of the queue error corrected per decision
    increase_fraction: float = 0.1  # growth per decision once the queue has stayed short four times
    overload_backoff: float = 0.5  # limit x this on a 429
    failure_backoff: float = 0.75  # limit x this on a 5xx / timeout
    latency_tolerance: float = 1.0  # latency up to base x this counts as "no queue"
    metrics_max_age: float = 3.0  # seconds a scrape stays fresh
    min_interval: float = 0.05  # shortest time between decisions, seconds
    min_window_samples: int = 8  # latency samples a decision needs (noise averages out)
    probe_interval: float = 60.0  # seconds between re-measurements of the no-queue latency


@dataclass
class AdaptiveStats:
    """Live statistics of one controller."""

    limit: float = 0.0
    mode: str = "slow_start"  # slow_start | metrics | latency | probe
    in_flight: int = 0
    queue: float = 0.0  # last queue estimate
    waiting: float | None = None  # last scraped server queue
    running: float | None = None
    base_latency: float | None = None
    smoothed_latency: float | None = None
    samples: int = 0
    increases: int = 0
    decreases: int = 0
    backoffs: int = 0
    probes: int = 0


@dataclass
class AdaptiveController:
    """Computes an endpoint's concurrency limit from replies, errors and (optionally) its queue."""

    settings: AdaptiveSettings = field(default_factory=AdaptiveSettings)
    cap: float = math.inf  # the configured max_in_flight
    now: float = 0.0
    stats: AdaptiveStats = field(default_factory=AdaptiveStats)

    def __post_init__(self) -> None:
        s = self.settings
        self._max = max(s.min_limit, min(s.max_limit, self.cap))
        self._limit = self._clamp(s.initial_limit)
        self._slow_start = True
        self._inflight = 0
        self._peak = 0  # most in flight since the last decision (app-limited test)
        self._last_decision = self.now
        self._last_backoff = -math.inf
        self._blocked_at = -math.inf
        self._srtt: float | None = None
        self._base = math.inf
        self._base_seen = self.now  # last time a sample near `base` was seen
        self._probe_until: float | None = None
        self._cuts = 0  # decreases in a row
        self._empty = 0  # decisions in a row that found the queue below target
        self._w_ema: float | None = None
        self._limit_at_base = self._limit
        self._lat_n = 0  # latency samples since the last decision: count, sum, sum of squares,
        self._lat_sum = self._lat_sq = 0.0  # and the sum of in-flight counts they were sent with
        self._lat_c = 0.0
        self._probe_sum, self._probe_n = 0.0, 0
        self._w_n = 0  # scrapes since the last decision
        self._r_last = 0.0
        self._metrics_at = -math.inf
        self._sync(self.now)

    def set_cap(self, cap: float) -> None:
        """Apply a fixed cap from config (the limit never grows past it)."""
        self.cap = cap
        self._max = max(self.settings.min_limit, min(self.settings.max_limit, cap))
        self._limit = self._clamp(self._limit)
        self._limit_at_base = self._limit
        self._sync(self.now)

    # ---- what the router reads -------------------------------------------------------------
    @property
    def limit(self) -> int:
        """Requests that may be in flight now (a whole number, at least `min_limit`)."""
        lim = self._limit
        if self._probe_until is not None:
            lim = max(self.settings.min_limit, lim / 2)
        return max(1, int(lim))

    @property
    def in_flight(self) -> int:
        return self._inflight

    def statistics(self) -> AdaptiveStats:
        return self.stats

    # ---- inputs ----------------------------------------------------------------------------
    def on_send(self, now: float) -> int:
        """A request was sent; returns the number in flight including it (pass it to `on_sample`)."""
        self._inflight += 1
        self._peak = max(self._peak, self._inflight)
        self.stats.in_flight = self._inflight
        return self._inflight

    def on_blocked(self, now: float) -> None:
        """A request had to wait because the limit was reached: the limit, not the caller, is the bottleneck."""
        self._blocked_at = now

    def on_sample(self, now: float, outcome: Outcome, latency: float | None, sent_with: int) -> None:
        """A request sent with `sent_with` in flight ended after `latency` seconds."""
        self._inflight = max(0, self._inflight - 1)
        self.stats.in_flight = self._inflight
        s = self.settings
        if outcome is Outcome.OVERLOAD:
            self._backoff(now, s.overload_backoff)
        elif outcome is Outcome.FAILURE:
            self._backoff(now, s.failure_backoff)
        elif outcome is Outcome.OK and latency is not None and latency > 0:
            self._latency(now, latency, sent_with)
        self._maybe_decide(now)
        self._sync(now)

    def on_queue(self, now: float, waiting: float, running: float) -> None:
        """A scrape of the server's own queue: `waiting` queued, `running` being served (all clients)."""
        self._metrics_at = now
        self._w_n += 1
        # scrapes are snapshots of a queue that swings with each batch of replies: smooth them
        self._w_ema = waiting if self._w_ema is None else 0.5 * self._w_ema + 0.5 * waiting
        self._r_last = running
        self.stats.waiting, self.stats.running = waiting, running
        if self._probe_until is not None:  # metrics make the latency probe pointless
            self._probe_until = None
        if self._slow_start and waiting >= self._bounds()[0]:
            self._decide(now)  # the first queue signal ends slow start at once
        else:
            self._maybe_decide(now)
        self._sync(now)

    # ---- internals -------------------------------------------------------------------------
    def _metrics_fresh(self, now: float) -> bool:
        return now - self._metrics_at <= self.settings.metrics_max_age

    def _bounds(self) -> tuple[float, float, float]:
        target = max(1.0, self.settings.queue_fraction * self._limit)
        return target / 2, target, 1.5 * target

    def _latency(self, now: float, rtt: float, sent_with: int) -> None:
        self.stats.samples += 1
        self._srtt = rtt if self._srtt is None else 0.875 * self._srtt + 0.125 * rtt
        if self._probe_until is not None:
            if sent_with <= self.limit:
                self._probe_sum += rtt
                self._probe_n += 1
        else:
            self._lat_n += 1
            self._lat_sum += rtt
            self._lat_sq += rtt * rtt
            self._lat_c += sent_with
        if self._slow_start:
            if self._lat_n >= self.settings.min_window_samples:
                self._slow_start_check(now)
            if self._slow_start and not self._app_limited(now):
                self._limit = self._clamp(self._limit + 1.0)
        self._probe(now, self._metrics_fresh(now))

    def _slow_start_check(self, now: float) -> None:
        """Leave slow start at the first sign of a queue in latency, without waiting a round trip.

        With metrics, latency only ends the exponential growth (batching also raises latency);
        the metrics decide any cut."""
        q = self._latency_queue()
        if q is None:
            return
        lo, _, hi = self._bounds()
        if q >= lo:
            self._slow_start = False
            if not self._metrics_fresh(now) and q > hi:
                self._lat_n = self.settings.min_window_samples  # keep this window for _decide
                self._decide_on(now, q, 1.0)
                return
        self._reset_latency()

    def _latency_queue(self) -> float | None:
        """Vegas's queue estimate over the window: mean in flight x (1 - base / mean latency).

        Means over a window, not single samples, with a margin of two standard errors on
        both sides (the base is the lowest upper bound seen, the window's mean is taken at
        its lower bound), so that latency noise is not read as queueing."""
        n = self._lat_n
        if n < self.settings.min_window_samples:
            return None
        mean = self._lat_sum / n
        se = math.sqrt(max(0.0, self._lat_sq / n - mean * mean) / n)
        upper = mean + 2 * se
        if upper <= self._base * 1.05:
            self._base_seen = self._last_decision
            self._limit_at_base = self._limit
        self._base = min(self._base, upper)
        lower = mean - 2 * se
        if lower <= 0:
            return 0.0
        return (self._lat_c / n) * max(0.0, 1.0 - self.settings.latency_tolerance * self._base / lower)

    def _probe(self, now: float, metrics: bool) -> None:
        s = self.settings
        if self._probe_until is not None:
            if now >= self._probe_until:
                if self._probe_n:
                    self._base = self._probe_sum / self._probe_n
                self._base_seen = now
                self._limit_at_base = self._limit
                self._probe_until = None
                self._reset_window(now)
            return
        stale = now - self._base_seen
        # a run of cuts with no reply near the base latency: the base may be stale (the server
        # got slower), not the queue longer; re-measure now rather than at the next interval
        suspect = self._cuts >= 3 and self._limit < 0.5 * self._limit_at_base
        if not metrics and not self._slow_start and (stale > s.probe_interval or suspect):
            self._cuts = 0
            self._probe_until = now + max(4 * s.min_interval, 2.5 * (self._srtt or 0.0))
            self._probe_sum, self._probe_n = 0.0, 0
            self.stats.probes += 1

    def _backoff(self, now: float, factor: float) -> None:
        self._slow_start = False
        if now - self._last_backoff < max(self.settings.min_interval, self._srtt or 0.0):
            return  # one cut per round trip: a burst of errors is one congestion event
        self._last_backoff = now
        self._limit = self._clamp(self._limit * factor)
        self.stats.backoffs += 1
        self._reset_window(now)

    def _app_limited(self, now: float) -> bool:
        """Whether the caller, not the limit, bounds what is in flight (then growing would mean nothing).

        A caller that reports `on_blocked` is limit-bound for two round trips after it; without
        such reports, the peak in flight since the last decision must reach 3/4 of the limit."""
        if now - self._blocked_at <= 2 * max(self.settings.min_interval, self._srtt or 0.0):
            return False
        return self._peak < 0.75 * int(self._limit)

    def _maybe_decide(self, now: float) -> None:
        interval = max(self.settings.min_interval, self._srtt or 0.0)
        if now - self._last_decision >= interval:
            self._decide(now)

    def _decide(self, now: float) -> None:
        if self._probe_until is not None:
            return
        q: float | None = None
        share = 1.0
        if self._metrics_fresh(now) and self._w_n and self._w_ema is not None:
            q = self._w_ema
            # only our part of the server's queue is ours to remove
            share = min(1.0, self._inflight / max(1.0, self._r_last + q))
        elif not self._metrics_fresh(now):
            q = self._latency_queue()
        if q is None:
            return
        self._decide_on(now, q, share)

    def _decide_on(self, now: float, q: float, share: float) -> None:
        s = self.settings
        self.stats.queue = q
        lo, target, hi = self._bounds()
        if q > hi:
            cut = s.gain * (q - target) * share
            self._limit = self._clamp(max(self._limit / 2, self._limit - cut))
            self._slow_start = False
            self.stats.decreases += 1
            self._cuts += 1
            self._empty = 0
        elif q < lo:
            self._cuts = 0
            if not self._slow_start and not self._app_limited(now):
                # one low reading may be a snapshot between two batches: act on the second in a row,
                # stepping toward the target; a queue that stays empty means room: grow by 10%
                self._empty += 1
                if self._empty >= 2:
                    step = s.gain * (target - q)
                    if self._empty >= 4:
                        step = max(step, s.increase_fraction * self._limit)
                    self._limit = self._clamp(self._limit + step)
                    self.stats.increases += 1
        else:
            self._slow_start = False
            self._cuts = 0
            self._empty = 0
        self._reset_window(now)

    def _reset_window(self, now: float) -> None:
        self._last_decision = now
        self._reset_latency()
        self._w_n = 0
        self._peak = self._inflight

    def _reset_latency(self) -> None:
        self._lat_n, self._lat_sum, self._lat_sq, self._lat_c = 0, 0.0, 0.0, 0.0

    def _clamp(self, limit: float) -> float:
        return max(self.settings.min_limit, min(self._max, limit))

    def _sync(self, now: float) -> None:
        st = self.stats
        st.limit = self._limit
        st.smoothed_latency = self._srtt
        st.base_latency = self._base if math.isfinite(self._base) else None
        if self._probe_until is not None:
            st.mode = "probe"
        elif self._slow_start:
            st.mode = "slow_start"
        else:
            st.mode = "metrics" if self._metrics_fresh(now) else "latency"
