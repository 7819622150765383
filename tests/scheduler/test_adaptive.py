"""Adaptive concurrency: the pure controller against a simulated queueing server, then against FakeOpenAI."""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from engine.client.http import EndpointClient
from engine.client.probe import MetricsProbe, parse_queue_metrics
from engine.client.protocol import ChatRequest, Message
from engine.scheduler.adaptive import AdaptiveController, AdaptiveSettings, Outcome
from engine.scheduler.budget import Budget
from engine.scheduler.router import Member, Router
from engine.testing.fake_openai import FakeOpenAI

# ---- a pure simulation: N slots, FIFO queue, service time with noise --------------------------------


@dataclass
class Sim:
    """A server with `n` slots that queues the rest (or answers 429 when `reject`), driven by events."""

    n: int
    service: float
    noise: float = 0.05
    metrics: bool = True
    scrape: float = 0.25
    reject: bool = False
    slower_at: float | None = None  # from then on, service takes twice as long
    seed: int = 0
    trace: list[tuple[float, int]] = field(default_factory=list)  # (time, limit)
    served_after: dict[float, int] = field(default_factory=dict)
    rejected: int = 0
    sent: int = 0

    def run(self, duration: float, settings: AdaptiveSettings | None = None) -> AdaptiveController:
        rng = random.Random(self.seed)
        ctl = AdaptiveController(settings or AdaptiveSettings())
        events: list[tuple[float, int, str, Any]] = []
        seq = 0
        running, waiting = 0, deque[tuple[float, int]]()
        self.served = 0

        def push(t: float, kind: str, data: Any = None) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(events, (t, seq, kind, data))

        def service(t: float) -> float:
            s = self.service * (2 if self.slower_at is not None and t >= self.slower_at else 1)
            return s * (1 + self.noise * (2 * rng.random() - 1))

        def send(t: float) -> None:
            nonlocal running
            while ctl.in_flight < ctl.limit:
                c = ctl.on_send(t)
                self.sent += 1
                if running < self.n:
                    running += 1
                    push(t + service(t), "done", (t, c))
                elif self.reject:
                    self.rejected += 1
                    push(t + 0.001, "429", (t, c))
                else:
                    waiting.append((t, c))
            ctl.on_blocked(t)  # an endless backlog: the limit is always what holds work back

        if self.metrics:
            push(self.scrape, "scrape")
        send(0.0)
        while events:
            t, _, kind, data = heapq.heappop(events)
            if t > duration:
                break
            if kind == "scrape":
                ctl.on_queue(t, len(waiting), running)
                push(t + self.scrape, "scrape")
            elif kind == "429":
                ctl.on_sample(t, Outcome.OVERLOAD, None, data[1])
            else:
                running -= 1
                if waiting:
                    running += 1
                    push(t + service(t), "done", waiting.popleft())
                ctl.on_sample(t, Outcome.OK, t - data[0], data[1])
                self.served += 1
            self.trace.append((t, ctl.limit))
            send(t)
        return ctl

    def limits(self, start: float, end: float = float("inf")) -> list[int]:
        return [lim for t, lim in self.trace if start < t <= end]


@pytest.mark.parametrize("metrics", [True, False], ids=["queue-metrics", "latency-only"])
@pytest.mark.parametrize("n", [8, 32, 128])
def test_converges_within_25_percent_of_capacity_without_flooding(n: int, metrics: bool) -> None:
    sim = Sim(n=n, service=0.1, metrics=metrics)
    sim.run(30.0)
    late = sim.limits(15.0)
    mean = sum(late) / len(late)
    assert 0.75 * n <= mean <= 1.25 * n, (n, metrics, mean)
    assert max(late) <= 1.5 * n  # after convergence it never floods the server
    assert max(sim.limits(0.0)) <= 4 * n  # slow start overshoots by at most a few round trips
    assert sim.served >= 0.95 * (n / 0.1) * 30.0  # the server stayed busy, ramp-up included


def test_latency_noise_is_not_read_as_a_queue() -> None:
    sim = Sim(n=64, service=0.1, noise=0.3, metrics=False, seed=1)
    sim.run(30.0)
    late = sim.limits(15.0)
    assert 0.75 * 64 <= sum(late) / len(late) <= 1.25 * 64


def test_recovers_when_the_server_gets_slower() -> None:
    """A stale no-queue latency would read every reply as queued; the re-probe fixes it."""
    sim = Sim(n=32, service=0.1, metrics=False, slower_at=20.0)
    ctl = sim.run(60.0, AdaptiveSettings(probe_interval=20.0))
    late = sim.limits(40.0)
    assert 0.75 * 32 <= sum(late) / len(late) <= 1.25 * 32
    assert ctl.stats.probes >= 1
    assert ctl.stats.base_latency == pytest.approx(0.2, rel=0.1)


def test_429s_cut_the_limit_and_it_stays_near_capacity() -> None:
    sim = Sim(n=16, service=0.1, metrics=False, reject=True, noise=0.0)
    ctl = sim.run(30.0)
    late = sim.limits(15.0)
    assert sum(late) / len(late) <= 1.25 * 16
    assert ctl.stats.backoffs >= 1
    assert sim.rejected < 0.05 * sim.sent


def test_fixed_cap_still_binds_and_app_limited_callers_do_not_inflate_it() -> None:
    ctl = AdaptiveController(AdaptiveSettings(initial_limit=4), cap=6)
    t = 0.0
    for _ in range(100):  # the limit kept full, replies fast and no queue: growth stops at the cap
        sent = [ctl.on_send(t) for _ in range(ctl.limit - ctl.in_flight)]
        t += 0.01
        for c in sent:
            ctl.on_sample(t, Outcome.OK, 0.01, c)
    assert ctl.limit == 6 and ctl.stats.limit == 6
    idle = AdaptiveController(AdaptiveSettings(initial_limit=4))
    t = 0.0
    for _ in range(200):  # only ever one request in flight: the limit must not grow past 4
        c = idle.on_send(t)
        t += 0.01
        idle.on_sample(t, Outcome.OK, 0.01, c)
        idle.on_queue(t, 0, 1)
    assert idle.limit == 4


def test_failures_back_off_once_per_round_trip() -> None:
    ctl = AdaptiveController(AdaptiveSettings(initial_limit=40))
    sent = [ctl.on_send(0.0) for _ in range(40)]
    for c in sent[:10]:  # a burst of ten 503s is one congestion event
        ctl.on_sample(0.01, Outcome.FAILURE, None, c)
    assert ctl.limit == 30 and ctl.stats.backoffs == 1
    ctl.on_sample(0.2, Outcome.OVERLOAD, None, sent[10])
    assert ctl.limit == 15


# ---- the metrics probe ---------------------------------------------------------------------------
VLLM = """# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 12.0
vllm:num_requests_running{engine="1",model_name="m"} 4.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
"""
LLAMACPP = """# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 5
"""


def test_parse_queue_metrics_knows_vllm_and_llamacpp_and_sums_series() -> None:
    v = parse_queue_metrics(VLLM)
    assert v is not None and (v.running, v.waiting, v.server) == (16.0, 3.0, "vllm")
    ll = parse_queue_metrics(LLAMACPP)
    assert ll is not None and (ll.running, ll.waiting, ll.server) == (2.0, 5.0, "llamacpp")
    assert parse_queue_metrics("# TYPE other gauge\nother 1\n") is None
    assert parse_queue_metrics("not { prometheus") is None


# ---- against the real fake server ---------------------------------------------------------------
@pytest.fixture(params=[pytest.param(("asyncio", {}), id="asyncio"),
                        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.mark.anyio
async def test_adaptive_converges_on_fake_openai_with_queue_metrics() -> None:
    n, latency, duration = 8, 0.05, 3.0  # about 450 requests
    async with FakeOpenAI(max_concurrency=n, latency=latency) as fake:
        probe = MetricsProbe(fake.base_url + "/metrics")
        member = Member("fake", EndpointClient("fake", fake.base_url, max_connections=512),
                        Budget(max_in_flight=256), adaptive=AdaptiveController(now=time.monotonic()), probe=probe)
        router = Router("r", [member], scrape_interval=0.1)
        req = ChatRequest(model="m", messages=[Message(role="user", content="hello")], max_tokens=8)
        trace: list[tuple[float, int, int]] = []
        t0 = time.monotonic()

        async def worker() -> None:
            while True:
                lease = await router.acquire(16)
                lease.ok(await lease.call(lease.client.complete, req), 8)

        async def watch() -> None:
            while True:
                trace.append((time.monotonic() - t0, member.budget.max_in_flight, fake.stats.waiting))
                await anyio.sleep(0.01)

        await router.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(router.run)
                tg.start_soon(watch)
                for _ in range(256):  # far more willing senders than the server has slots
                    tg.start_soon(worker)
                await anyio.sleep(duration)
                tg.cancel_scope.cancel()
        finally:
            await router.close()
        served = fake.stats.served
    assert probe.stats.scrapes > 10 and not probe.stats.absent
    assert member.adaptive is not None and member.adaptive.stats.mode == "metrics"
    late = [(lim, w) for t, lim, w in trace if t > duration / 2]
    mean_limit = sum(lim for lim, _ in late) / len(late)
    mean_waiting = sum(w for _, w in late) / len(late)
    assert 0.75 * n <= mean_limit <= 1.25 * n, mean_limit
    assert max(lim for lim, _ in late) <= 1.5 * n
    assert mean_waiting <= 3  # the server's queue stays short: no flooding
    assert fake.stats.max_concurrent == n  # and it stayed saturated
    assert served >= 0.85 * duration * n / latency  # ramp-up included
