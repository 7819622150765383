"""The async face of `Budget`: waits in FIFO order; the arithmetic lives in budget.py."""

from __future__ import annotations

import asyncio
import math
import time

from engine.scheduler.budget import Budget, BudgetStats


class Limiter:
    """Admits requests to one endpoint within its budget; `acquire` sleeps, never computes."""

    def __init__(self, budget: Budget, clock: type[time.monotonic] | None = None) -> None:  # type: ignore[valid-type]
        self.budget = budget
        self._now = time.monotonic
        self._lock = asyncio.Lock()  # FIFO: only the head of the line waits on the budget
        self._freed = asyncio.Event()
        budget.start(self._now())

    async def acquire(self, tokens: int) -> None:
        """Wait until a request of `tokens` estimated tokens may be sent."""
        b = self.budget
        if not self._lock.locked() and b.reserve(self._now(), tokens) == 0.0:
            return
        async with self._lock:
            while True:
                delay = b.reserve(self._now(), tokens)
                if delay == 0.0:
                    return
                if math.isinf(delay):
                    self._freed.clear()
                    await self._freed.wait()
                else:
                    await asyncio.sleep(delay)

    def release(self, reserved: int, used: int | None) -> None:
        """The request is over: settle its tokens and wake a waiter."""
        self.budget.settle(self._now(), reserved, used)
        self._freed.set()

    def rate_limited(self, retry_after: float | None) -> None:
        self.budget.rate_limited(self._now(), retry_after)

    def observe(self, info: tuple[float | None, float | None, float | None, float | None]) -> None:
        self.budget.observe_headers(self._now(), *info)

    def statistics(self) -> BudgetStats:
        return self.budget.stats
