"""The scheduler's queue: priorities, backpressure, delayed retries, close, pending."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.io.checkpoint import WorkItem
from engine.scheduler.workqueue import WorkQueue


def _item(key: str) -> WorkItem:
    return WorkItem(key=key, stage="s", payload={"k": key})


def _loops() -> list[Any]:
    out: list[Any] = [pytest.param(asyncio.run, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return out
    out.append(pytest.param(uvloop.run, id="uvloop"))
    return out


LOOPS = _loops()
Runner = Callable[[Awaitable[Any]], Any]


async def _keys(q: WorkQueue, n: int, timeout: float = 2.0) -> list[str]:
    out = []
    for _ in range(n):
        it = await asyncio.wait_for(q.get(), timeout)
        assert it is not None
        out.append(it.key)
    return out


@pytest.mark.parametrize("run", LOOPS)
def test_follow_ups_before_inputs(run: Runner) -> None:
    async def main() -> list[str]:
        q = WorkQueue(10)
        await q.put_input(_item("in1"))
        await q.put_input(_item("in2"))
        q.put_ready(_item("f1"))
        q.put_ready(_item("f2"))
        q.put_ready(_item("f0"), front=True)
        return await _keys(q, 5)

    assert run(main()) == ["f0", "f1", "f2", "in1", "in2"]


@pytest.mark.parametrize("run", LOOPS)
def test_put_input_blocks_at_capacity_and_resumes(run: Runner) -> None:
    async def main() -> None:
        q = WorkQueue(2)
        await asyncio.wait_for(q.put_input(_item("a")), 1)
        await asyncio.wait_for(q.put_input(_item("b")), 1)
        blocked = asyncio.create_task(q.put_input(_item("c")))
        await asyncio.sleep(0.05)
        assert not blocked.done()  # backpressure
        assert len(q) == 2
        assert (await _keys(q, 1)) == ["a"]
        await asyncio.wait_for(blocked, 1)  # space freed: the producer goes on
        assert [i.key for i in q.pending()] == ["b", "c"]

    run(main())


@pytest.mark.parametrize("run", LOOPS)
def test_follow_ups_never_block(run: Runner) -> None:
    async def main() -> None:
        q = WorkQueue(1)
        await q.put_input(_item("a"))
        for i in range(50):
            q.put_ready(_item(f"f{i}"))  # synchronous: cannot block
        assert len(q) == 51

    run(main())


@pytest.mark.parametrize("run", LOOPS)
def test_put_input_resumes_when_follow_ups_drain(run: Runner) -> None:
    """Regression: taking follow-ups wakes a blocked producer (else a resume can hang)."""

    async def main() -> None:
        q = WorkQueue(2)
        q.put_ready(_item("f1"))
        q.put_ready(_item("f2"))
        blocked = asyncio.create_task(q.put_input(_item("in")))
        await asyncio.sleep(0.02)
        assert not blocked.done()  # the backlog is at capacity
        assert (await _keys(q, 2)) == ["f1", "f2"]  # backlog is now empty
        await asyncio.wait_for(blocked, 0.5)
        assert (await _keys(q, 1)) == ["in"]

    run(main())


@pytest.mark.parametrize("run", LOOPS)
def test_put_later_not_before_its_delay(run: Runner) -> None:
    async def main() -> None:
        q = WorkQueue(10)
        t0 = time.monotonic()
        q.put_later(_item("late"), 0.3)
        q.put_later(_item("soon"), 0.1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.get(), 0.05)
        first = await asyncio.wait_for(q.get(), 2)
        t1 = time.monotonic() - t0
        second = await asyncio.wait_for(q.get(), 2)
        t2 = time.monotonic() - t0
        assert first is not None and first.key == "soon"
        assert second is not None and second.key == "late"
        assert 0.1 <= t1 < 0.25
        assert 0.3 <= t2 < 0.5

    run(main())


@pytest.mark.parametrize("run", LOOPS)
def test_due_retry_goes_before_inputs(run: Runner) -> None:
    async def main() -> list[str]:
        q = WorkQueue(10)
        q.put_later(_item("retry"), 0.05)
        await q.put_input(_item("in1"))
        await q.put_input(_item("in2"))
        got = await _keys(q, 1)  # retry not due yet: an input comes first
        await asyncio.sleep(0.08)
        return got + await _keys(q, 2)

    assert run(main()) == ["in1", "retry", "in2"]


@pytest.mark.parametrize("run", LOOPS)
def test_waiting_getters_wake_for_new_work(run: Runner) -> None:
    async def main() -> list[str]:
        q = WorkQueue(10)
        getters = [asyncio.create_task(q.get()) for _ in range(3)]
        await asyncio.sleep(0.01)
        q.put_ready(_item("a"))
        await q.put_input(_item("b"))
        q.put_later(_item("c"), 0.02)
        done = await asyncio.wait_for(asyncio.gather(*getters), 2)
        return sorted(i.key for i in done if i is not None)

    assert run(main()) == ["a", "b", "c"]


@pytest.mark.parametrize("run", LOOPS)
def test_close_returns_none_once_empty(run: Runner) -> None:
    async def main() -> None:
        q = WorkQueue(10)
        waiting = asyncio.create_task(q.get())
        await asyncio.sleep(0.01)
        await q.put_input(_item("a"))
        got = await asyncio.wait_for(waiting, 1)
        assert got is not None and got.key == "a"
        await q.put_input(_item("b"))
        q.put_later(_item("c"), 0.05)
        q.close()
        assert (await _keys(q, 1)) == ["b"]  # what is queued still comes out
        c = await asyncio.wait_for(q.get(), 1)  # and a pending retry, once due
        assert c is not None and c.key == "c"
        assert await asyncio.wait_for(q.get(), 1) is None
        assert await asyncio.wait_for(q.get(), 1) is None

    run(main())


@pytest.mark.parametrize("run", LOOPS)
def test_close_wakes_every_getter(run: Runner) -> None:
    async def main() -> list[Any]:
        q = WorkQueue(10)
        getters = [asyncio.create_task(q.get()) for _ in range(4)]
        await asyncio.sleep(0.01)
        q.close()
        return await asyncio.wait_for(asyncio.gather(*getters), 1)

    assert run(main()) == [None] * 4


@pytest.mark.parametrize("run", LOOPS)
def test_close_releases_blocked_producer(run: Runner) -> None:
    async def main() -> None:
        q = WorkQueue(1)
        await q.put_input(_item("a"))
        blocked = asyncio.create_task(q.put_input(_item("b")))
        await asyncio.sleep(0.01)
        assert not blocked.done()
        q.close()
        await asyncio.wait_for(blocked, 1)

    run(main())


@pytest.mark.parametrize("run", LOOPS)
def test_pending_lists_every_item(run: Runner) -> None:
    async def main() -> None:
        q = WorkQueue(10)
        await q.put_input(_item("in"))
        q.put_ready(_item("ready"))
        q.put_later(_item("later"), 60)
        keys = [i.key for i in q.pending()]
        assert sorted(keys) == ["in", "later", "ready"]
        assert len(q) == 3
        assert q.backlog() == 2
        s = q.statistics()
        assert (s.ready, s.inputs, s.delayed, s.capacity) == (1, 1, 1, 10)
        got = await _keys(q, 1)
        assert got == ["ready"]
        assert sorted(i.key for i in q.pending()) == ["in", "later"]

    run(main())
