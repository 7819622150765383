"""The scheduler's queue: follow-up work first, then inputs (bounded), retries when due."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from dataclasses import dataclass

from engine.io.checkpoint import WorkItem


@dataclass
class QueueStats:
    """Live statistics of the queue."""

    ready: int = 0
    inputs: int = 0
    delayed: int = 0
    capacity: int = 0


class WorkQueue:
    """Follow-ups and due retries go first; inputs wait in a bounded lane (backpressure)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ready: deque[WorkItem] = deque()
        self._inputs: deque[WorkItem] = deque()
        self._delayed: list[tuple[float, int, WorkItem]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self.closed = False

    def __len__(self) -> int:
        return len(self._ready) + len(self._inputs) + len(self._delayed)

    def backlog(self) -> int:
        """Items waiting to run now (not counting retries waiting out their delay)."""
        return len(self._ready) + len(self._inputs)

    async def put_input(self, item: WorkItem) -> None:
        """Queue an input item; waits while the queue holds `capacity` items or more."""
        while self.backlog() >= self.capacity and not self.closed:
            self._space.clear()
            await self._space.wait()
        self._inputs.append(item)
        self._wake.set()

    def put_ready(self, item: WorkItem, *, front: bool = False) -> None:
        """Queue follow-up work (never blocks: it must not deadlock the workers)."""
        if front:
            self._ready.appendleft(item)
        else:
            self._ready.append(item)
        self._wake.set()

    def put_later(self, item: WorkItem, delay: float) -> None:
        """Queue a retry that becomes due after `delay` seconds."""
        heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), item))
        self._wake.set()

    def pending(self) -> list[WorkItem]:
        """Every queued item (for checkpoints)."""
        return [*self._ready, *self._inputs, *(i for _, _, i in self._delayed)]

    def close(self) -> None:
        """Wake every getter; `get` returns None once nothing is left."""
        self.closed = True
        self._wake.set()
        self._space.set()

    async def get(self) -> WorkItem | None:
        """The next item to run; None when the queue is closed and empty."""
        while True:
            if self._delayed:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._ready.append(heapq.heappop(self._delayed)[2])
            if self._ready or self._inputs:
                item = self._ready.popleft() if self._ready else self._inputs.popleft()
                if self.backlog() < self.capacity:
                    self._space.set()
                return item
            if self.closed and not self._delayed:
                return None
            self._wake.clear()
            if self._delayed and (self._timer is None or self._delayed[0][0] < self._timer_due):
                if self._timer is not None:
                    self._timer.cancel()
                self._timer_due = self._delayed[0][0]
                delay = max(0.0, self._timer_due - time.monotonic())
                self._timer = asyncio.get_running_loop().call_later(delay, self._tick)
            await self._wake.wait()
            # several getters may wake for one item: keep the event set while work remains
            if self.backlog() > 1:
                self._wake.set()

    def _tick(self) -> None:
        self._timer = None
        self._wake.set()

    def statistics(self) -> QueueStats:
        return QueueStats(len(self._ready), len(self._inputs), len(self._delayed), self.capacity)
