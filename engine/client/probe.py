"""Scrape an LLM server's Prometheus /metrics for its request queue (parsing is pure, I/O is thin).

Known names (summed over every series, e.g. several models or data-parallel engines):

| server    | running                          | waiting                          |
|-----------|----------------------------------|----------------------------------|
| vLLM      | ``vllm:num_requests_running``    | ``vllm:num_requests_waiting``    |
| SGLang    | ``sglang:num_running_reqs``      | ``sglang:num_queue_reqs``        |
| llama.cpp | ``llamacpp:requests_processing`` | ``llamacpp:requests_deferred``   |
| TGI       | ``tgi_batch_current_size``       | ``tgi_queue_size``               |

llama.cpp publishes /metrics only when started with ``--metrics``. A server without the
route (404) or without these names is remembered as "no metrics" and asked again only
every ``retry_absent`` seconds; the adaptive limiter then steers on latency alone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

QUEUE_METRICS: dict[str, tuple[str, str]] = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "sglang": ("sglang:num_running_reqs", "sglang:num_queue_reqs"),
    "llamacpp": ("llamacpp:requests_processing", "llamacpp:requests_deferred"),
    "tgi": ("tgi_batch_current_size", "tgi_queue_size"),
}


@dataclass(frozen=True)
class QueueSample:
    """The server's own view of its load at one moment."""

    running: float
    waiting: float
    server: str  # which naming scheme matched: vllm | sglang | llamacpp | tgi


@dataclass
class ProbeStats:
    """Live statistics of one scraper."""

    scrapes: int = 0
    errors: int = 0
    absent: bool = False  # the server publishes no queue metrics
    last: QueueSample | None = None
    last_error: str = ""


def parse_queue_metrics(text: str) -> QueueSample | None:
    """The queue gauges in a Prometheus text exposition, or None when it has none we know."""
    values: dict[str, float] = {}
    wanted = {name for pair in QUEUE_METRICS.values() for name in pair}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in wanted:
                    values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    except ValueError:  # the parser's only complaint about malformed text
        return None
    for server, (running, waiting) in QUEUE_METRICS.items():
        if running in values and waiting in values:
            return QueueSample(running=values[running], waiting=values[waiting], server=server)
    return None


def metrics_url(base_url: str) -> str:
    """``http://host:8000/v1`` -> ``http://host:8000/metrics`` (the route sits beside /v1)."""
    url = base_url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url + "/metrics"


class MetricsProbe:
    """Reads one server's queue from its /metrics; `scrape` never raises for a network error."""

    def __init__(self, url: str, *, timeout: float = 2.0, retry_absent: float = 60.0) -> None:
        self.url = url
        self.stats = ProbeStats()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry_absent = retry_absent
        self._absent_since: float | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def statistics(self) -> ProbeStats:
        return self.stats

    async def scrape(self) -> QueueSample | None:
        """One scrape: the queue, or None (no metrics, or the scrape failed)."""
        now = time.monotonic()
        if self._absent_since is not None and now - self._absent_since < self._retry_absent:
            return None
        await self.start()
        assert self._session is not None
        try:
            async with self._session.get(self.url) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            self.stats.errors += 1
            self.stats.last_error = f"{type(e).__name__}: {e}"
            return None
        self.stats.scrapes += 1
        if status != 200 and status not in (404, 405, 501):  # a sick server, not a missing route
            self.stats.errors += 1
            self.stats.last_error = f"HTTP {status}"
            return None
        sample = parse_queue_metrics(text) if status == 200 else None
        if sample is None:
            self._absent_since = now
            self.stats.absent = True
            self.stats.last_error = f"HTTP {status}" if status != 200 else "no queue metrics"
            return None
        self._absent_since = None
        self.stats.absent = False
        self.stats.last = sample
        return sample
