"""FakeOpenAI's budgets (token buckets), live counters, and their Prometheus view."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["Bucket", "FakeStats", "StatsCollector"]


class Bucket:
    """Token bucket: ``per_min`` units a minute, refilled continuously, capped at ``burst_s`` s."""

    def __init__(self, per_min: int, burst_s: float, now: float) -> None:
        self.limit = per_min
        self.rate = per_min / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.t = now

    def wait(self, now: float, amount: float) -> float:
        """Seconds until ``amount`` fits (0 = now); an amount above capacity needs a full bucket."""
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def reset_in(self) -> float:
        return max(0.0, self.capacity - self.level) / self.rate


@dataclass
class FakeStats:
    """Live counters; read them from any thread (plain ints, written on the server's loop)."""

    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0  # 429s from the rpm/tpm budget (injected 429s are in faults)
    served: int = 0  # 200s sent whole (malformed and no_usage included; reset/truncated not)
    running: int = 0
    waiting: int = 0
    max_concurrent: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _per_second: Counter[int] = field(default_factory=Counter)

    @property
    def n_429(self) -> int:
        return self.by_status[429]

    @property
    def tokens_served(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def timeline(self) -> list[tuple[int, int]]:
        """Replies served whole, per whole second since start, as (second, count)."""
        return sorted(self._per_second.items())


class _HasStats(Protocol):
    stats: FakeStats
    model: str


class StatsCollector:
    """Exposes the stats in vLLM's metric names at scrape time (no per-request cost)."""

    def __init__(self, fake: _HasStats) -> None:
        self._fake = fake

    def collect(self) -> Iterable[Metric]:
        s, labels = self._fake.stats, [self._fake.model]
        for name, value, doc in (
            ("vllm:num_requests_running", s.running, "Requests being served."),
            ("vllm:num_requests_waiting", s.waiting, "Requests queued for a slot."),
        ):
            g = GaugeMetricFamily(name, doc, labels=["model_name"])
            g.add_metric(labels, value)
            yield g
        for name, value, doc in (
            ("vllm:prompt_tokens", s.prompt_tokens, "Prompt tokens served."),
            ("vllm:generation_tokens", s.completion_tokens, "Completion tokens served."),
            ("vllm:request_success", s.served, "Requests answered in full."),
        ):
            c = CounterMetricFamily(name, doc, labels=["model_name"])
            c.add_metric(labels, value)
            yield c
