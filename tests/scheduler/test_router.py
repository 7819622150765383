"""The router: least-loaded choice, overflow, breakers, drain and failover; then two real fake servers."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.client.http import EndpointClient
from engine.client.protocol import ChatReply, ChatRequest, Message, Usage
from engine.errors import EndpointDrained, RateLimited, RetryableError
from engine.scheduler.breaker import BreakerSettings, BreakerState, CircuitBreaker
from engine.scheduler.budget import Budget
from engine.scheduler.router import Member, Router
from engine.testing.fake_openai import FakeOpenAI, Fault

pytestmark = pytest.mark.anyio

REPLY = ChatReply(content="ok", model="m", usage=Usage(1, 1, 2), finish_reason="stop", latency=0.0)
REQ = ChatRequest(model="m", messages=[Message(role="user", content="hi")], max_tokens=4)


@pytest.fixture(params=[pytest.param(("asyncio", {}), id="asyncio"),
                        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class NullClient:
    """A client the unit tests never call over a network."""

    ratelimit = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.base_url = f"http://{name}/v1"

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def complete(self, request: ChatRequest) -> ChatReply:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")


def member(name: str, cap: int = 4, priority: int = 0, threshold: int = 2, cooldown: float = 1.0) -> Member:
    return Member(name, NullClient(name), Budget(max_in_flight=cap), priority=priority,
                  breaker=CircuitBreaker(BreakerSettings(failure_threshold=threshold, cooldown=cooldown)))


async def test_least_loaded_relative_to_limit() -> None:
    r = Router("r", [member("a", cap=4), member("b", cap=8)])
    leases = [await r.acquire(10) for _ in range(9)]
    per = Counter(lease.name for lease in leases)
    assert per == {"a": 3, "b": 6}  # both about 3/4 full
    assert r.capacity() == 12


async def test_overflow_member_only_when_the_primary_is_full() -> None:
    r = Router("r", [member("local", cap=2), member("hosted", cap=10, priority=1)])
    first = [await r.acquire(10) for _ in range(3)]
    assert [x.name for x in first] == ["local", "local", "hosted"]
    first[0].ok(REPLY)
    assert (await r.acquire(10)).name == "local"


async def test_acquire_waits_for_a_free_slot() -> None:
    r = Router("r", [member("a", cap=1)])
    held = await r.acquire(1)
    got: list[str] = []

    async def waiter() -> None:
        got.append((await r.acquire(1)).name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.05)
        assert not got and r.statistics().waiting == 1
        held.ok(REPLY)
    assert got == ["a"]


async def test_failing_member_is_taken_out_probed_and_readmitted() -> None:
    clock = Clock()
    r = Router("r", [member("a", threshold=2, cooldown=1.0), member("b")], clock=clock)
    for _ in range(2):
        lease = await r.acquire(1, avoid="b")
        assert lease.failed(RetryableError("a: HTTP 503", status=503)) is True  # b can take the work
    a = r.members[0]
    assert a.breaker.state is BreakerState.OPEN
    names = {(await r.acquire(1)).name for _ in range(2)}
    assert names == {"b"}  # a is out, even though it is the least loaded
    clock.t = 1.0
    probe = await r.acquire(1)
    assert probe.name == "a" and probe.probe and a.breaker.state is BreakerState.HALF_OPEN
    with anyio.fail_after(1):
        other = await r.acquire(1)  # while the probe is out, the rest goes to b
    assert other.name == "b"
    probe.ok(REPLY)
    assert a.breaker.state is BreakerState.CLOSED
    stats = r.statistics().members["a"]
    assert stats.breaker.trips == 1 and stats.counts.failed == 2 and stats.counts.ok == 1


async def test_breaker_opening_drains_the_members_requests_in_flight() -> None:
    r = Router("r", [member("a", threshold=1), member("b")])
    slow = await r.acquire(1, avoid="b")
    assert slow.name == "a"
    raised: list[BaseException] = []

    async def in_flight() -> None:
        try:
            await slow.call(slow.client.complete, REQ)
        except EndpointDrained as e:
            raised.append(e)
            assert slow.failed(e) is True

    async with anyio.create_task_group() as tg:
        tg.start_soon(in_flight)
        await anyio.sleep(0.01)
        bad = await r.acquire(1, avoid="b")
        assert bad.name == "a"
        bad.failed(RetryableError("a: connection reset"))
    assert raised and "taken out of service" in str(raised[0])
    assert r.statistics().members["a"].counts.drained == 1
    assert r.statistics().members["a"].in_flight == 0


async def test_a_shutdown_cancel_is_not_lost_to_a_drain() -> None:
    """Drained, and cancelled from outside in the same step: the worker still stops at its next await."""
    r = Router("r", [member("a", threshold=1), member("b")])
    slow = await r.acquire(1, avoid="b")
    outcomes: list[str] = []

    async def worker() -> None:
        try:
            await slow.call(slow.client.complete, REQ)
        except EndpointDrained:
            outcomes.append("drained")  # a worker then takes its next item...
        try:
            await anyio.sleep(5)
            outcomes.append("slept")
        except anyio.get_cancelled_exc_class():
            outcomes.append("cancelled")
            raise

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            await anyio.sleep(0.01)
            slow.drain()
            tg.cancel_scope.cancel()  # the shutdown arrives in the same step as the drain
    assert outcomes[-1] == "cancelled" and "slept" not in outcomes
    # after it, the same task can still await: no cancel is left pending on it
    with anyio.fail_after(1):
        await anyio.sleep(0.01)


async def test_429_is_load_not_health_and_shifts_work_to_the_other_member() -> None:
    r = Router("r", [member("a", threshold=1), member("b")])
    lease = await r.acquire(1, avoid="b")
    assert lease.name == "a"
    assert lease.failed(RateLimited("a: HTTP 429", retry_after=30.0)) is True
    assert r.members[0].breaker.state is BreakerState.CLOSED
    assert {(await r.acquire(1)).name for _ in range(3)} == {"b"}  # a cools down for 30 s


async def test_single_member_never_advises_failover_and_avoid_is_only_a_preference() -> None:
    solo = Router("solo", [member("a")])
    lease = await solo.acquire(1, avoid="a")
    assert lease.name == "a"  # nothing else to use
    assert lease.failed(RetryableError("a: timeout")) is False
    pair = Router("pair", [member("a"), member("b")])
    assert {(await pair.acquire(1, avoid="a")).name for _ in range(4)} == {"b"}


async def test_a_lease_ends_once() -> None:
    r = Router("r", [member("a", cap=1)])
    lease = await r.acquire(1)
    lease.ok(REPLY)
    lease.failed(RetryableError("late"))  # ignored: the slot is not freed twice
    assert r.members[0].budget.stats.in_flight == 0
    assert r.statistics().members["a"].counts.failed == 0


# ---- two real servers, one failing for a while --------------------------------------------------
async def test_failing_endpoint_is_drained_readmitted_and_no_work_is_lost() -> None:
    broken = {"on": False}

    def faults(n: int, body: dict[str, Any]) -> Fault | None:
        return Fault("503") if broken["on"] else None

    async with FakeOpenAI(faults=faults, latency=0.01) as fa, FakeOpenAI(latency=0.01) as fb:
        members = [Member(name, EndpointClient(name, url, max_connections=8), Budget(max_in_flight=8),
                          breaker=CircuitBreaker(BreakerSettings(failure_threshold=3, cooldown=0.05,
                                                                 cooldown_max=0.2)))
                   for name, url in (("a", fa.base_url), ("b", fb.base_url))]
        router = Router("pool", members)
        await router.start()
        made = 0  # items are made until the stop time, so the run outlasts the fault window
        stop = time.monotonic() + 1.3
        pending: list[int] = []
        done: Counter[int] = Counter()
        failed_over: dict[int, str] = {}
        served_by: Counter[str] = Counter()
        a_requests_at_heal = 0

        async def worker() -> None:
            nonlocal made
            while True:
                if not pending:
                    if time.monotonic() < stop:
                        pending.append(made)
                        made += 1
                    elif len(done) == made:
                        return
                    else:
                        await anyio.sleep(0.005)  # a retry of someone else's is still due
                        continue
                item = pending.pop(0)
                lease = await router.acquire(8, avoid=failed_over.get(item))
                try:
                    reply = await lease.call(lease.client.complete, REQ)
                except RetryableError as e:
                    # the pipeline's retry path: once at once elsewhere, then with backoff
                    if lease.failed(e) and item not in failed_over:
                        failed_over[item] = lease.name
                        pending.insert(0, item)
                    else:
                        await anyio.sleep(0.02)
                        pending.append(item)
                    continue
                lease.ok(reply, 4)
                done[item] += 1
                served_by[lease.name] += 1

        async def faults_for_a_while() -> None:
            nonlocal a_requests_at_heal
            await anyio.sleep(0.3)
            broken["on"] = True
            await anyio.sleep(0.5)
            broken["on"] = False
            a_requests_at_heal = fa.stats.requests

        t0 = time.monotonic()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(faults_for_a_while)
                async with anyio.create_task_group() as workers:
                    for _ in range(12):
                        workers.start_soon(worker)
        finally:
            await router.close()
        elapsed = time.monotonic() - t0
    a = router.statistics().members["a"]
    assert elapsed > 1.2
    assert set(done) == set(range(made)) and max(done.values()) == 1  # nothing lost, nothing done twice
    assert a.breaker.trips >= 1 and a.counts.failed >= 3
    # while broken, a saw only the requests that tripped it, the ones in flight, and one probe per cool-down
    assert fa.stats.faults["503"] <= 3 + 8 + 12
    assert a.state == BreakerState.CLOSED.value  # healed and re-admitted ...
    assert fa.stats.requests - a_requests_at_heal > 50  # ... and carrying work again
    assert served_by["b"] > served_by["a"] > 0


class EchoClient(NullClient):
    """Answers at once with the model it was asked for, or raises what it was given."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        super().__init__(name)
        self.error = error
        self.models: list[str] = []

    async def complete(self, request: ChatRequest) -> ChatReply:
        self.models.append(request.model)
        if self.error is not None:
            raise self.error
        return REPLY


async def test_complete_sends_the_members_model_and_tags_errors() -> None:
    local = EchoClient("local", RetryableError("local: HTTP 502", status=502))
    hosted = EchoClient("hosted")
    r = Router("r", [Member("local", local, Budget(max_in_flight=1)),
                     Member("hosted", hosted, Budget(max_in_flight=1), model="gpt-x", priority=1)])
    with pytest.raises(RetryableError) as info:
        await r.complete(REQ, tokens=5)
    assert info.value.endpoint == "local" and info.value.failover is True  # type: ignore[attr-defined]
    assert local.models == ["m"]  # no model of its own: the request's is kept
    held = await r.acquire(1)  # fill local, so the next one overflows
    assert held.name == "local"
    assert await r.complete(REQ, tokens=5) is REPLY
    assert hosted.models == ["gpt-x"]
    assert r.statistics().members["hosted"].counts.ok == 1


# ---- through the whole pipeline (needs the router wired into engine/pipeline.py and engine/runner.py) ----
def _pipeline_has_router() -> bool:
    import dataclasses

    from engine.pipeline import EndpointRuntime

    return any(f.name == "router" for f in dataclasses.fields(EndpointRuntime))


@pytest.mark.skipif(not _pipeline_has_router(), reason="the router is not wired into the pipeline yet")
def test_persona_run_over_two_servers_survives_one_failing_for_a_while(tmp_path: Path) -> None:
    import json
    import threading

    from engine import config, runner
    from engine.io.sinks import read_records
    from engine.testing.fake_openai import run_in_thread

    broken = threading.Event()

    def faults(n: int, body: dict[str, Any]) -> Fault | None:
        if n == 40:
            broken.set()
            threading.Timer(0.6, broken.clear).start()
        return Fault("503") if broken.is_set() else None

    def reply(body: dict[str, Any]) -> str:
        return json.dumps({"persona": "a reader of " + body["messages"][-1]["content"][-40:]})

    n = 1500
    inputs = tmp_path / "in.txt"
    inputs.write_text("".join(f"text number {i:05d} about gardening in dry climates\n" for i in range(n)))
    with run_in_thread(reply=reply, faults=faults, latency=0.01) as fa, \
            run_in_thread(reply=reply, latency=0.01) as fb:
        cfg = config.from_dict({
            "run": {"checkpoint_interval": 1.0, "progress": "off"},
            "endpoints": {"pool": {"base_urls": [fa.base_url, fb.base_url], "model": "m", "max_in_flight": 16,
                                   "max_retries": 2, "breaker_failures": 3, "breaker_cooldown": 0.05}},
            "text_to_persona": {"endpoint": "pool", "max_tokens": 32},
            "gate": {"semantic": {"enabled": False}},
            "expansion": {"enabled": False}, "synthesis": {"enabled": False},
        })
        result = runner.execute(cfg, tmp_path / "out", [str(inputs)], progress_mode="off")
        faulted, a_total, b_total = fa.stats.faults["503"], fa.stats.served, fb.stats.served
    c = result.counters
    assert result.status == "finished", result.error
    assert c["inputs_done"] == n and c.get("dead", 0) == 0  # nothing lost: no item ran out of retries
    assert faulted >= 3 and c["failovers"] >= 1
    assert c["ok"] == n  # each input's reply was used once (a drained request may still be served, unread)
    assert a_total > 40 and b_total > 40  # both served; a healed and worked again
    ids = [r["id"] for r in read_records(tmp_path / "out" / "personas.jsonl.zst")]
    assert len(ids) == len(set(ids))
    status = json.loads((tmp_path / "out" / "checkpoint" / "status.json").read_text())
    assert status["endpoints"]["pool"]["members"]["pool[0]"]["breaker"]["trips"] >= 1


async def test_a_swallowed_drain_cancel_leaves_nothing_pending() -> None:
    """fn may swallow the drain's cancel: the worker must not keep it counted, so its next drain still works."""
    import asyncio
    import sys

    r = Router("r", [member("a"), member("b")])
    leases = [await r.acquire(1, avoid="b"), await r.acquire(1, avoid="a")]
    results: list[str] = []

    async def stubborn() -> str:
        try:
            await anyio.sleep(5)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    async def worker() -> None:
        results.append(await leases[0].call(stubborn))
        task = asyncio.current_task()
        if sys.version_info >= (3, 11):
            assert task is not None and task.cancelling() == 0
        try:
            await leases[1].call(anyio.sleep, 5)
            results.append("slept")
        except EndpointDrained:
            results.append("drained")

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            await anyio.sleep(0.01)
            leases[0].drain()
            await anyio.sleep(0.01)
            leases[1].drain()
    assert results == ["swallowed", "drained"]
