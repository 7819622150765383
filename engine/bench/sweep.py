"""Run one benchmark step: a fixed concurrency (closed loop) or a request rate (Poisson arrivals)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio

from engine.bench.request import Result
from engine.bench.workload import Prompt

Send = Callable[[Prompt], Awaitable[Result]]


async def by_concurrency(send: Send, prompts: Sequence[Prompt], concurrency: int) -> tuple[list[Result], float]:
    """`concurrency` workers send the prompts back to back; returns the results and the wall time."""
    results: list[Result] = []
    it = iter(prompts)

    async def worker() -> None:
        for prompt in it:  # a shared iterator: each prompt goes to exactly one worker
            results.append(await send(prompt))

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, len(prompts))):
            tg.start_soon(worker)
    return results, time.perf_counter() - t0


async def by_rate(send: Send, prompts: Sequence[Prompt], rate: float, max_concurrency: int | None,
                  seed: int = 0) -> tuple[list[Result], float]:
    """Send at `rate` requests/s on average (exponential gaps), at most `max_concurrency` at once."""
    rng = random.Random(seed)
    results: list[Result] = []
    limit = anyio.CapacityLimiter(max_concurrency) if max_concurrency else None

    async def one(prompt: Prompt) -> None:
        if limit is None:
            results.append(await send(prompt))
            return
        async with limit:
            results.append(await send(prompt))

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        due = t0
        for prompt in prompts:
            tg.start_soon(one, prompt)
            if math.isfinite(rate):
                due += rng.expovariate(rate)
                await anyio.sleep(max(0.0, due - time.perf_counter()))
    return results, time.perf_counter() - t0
