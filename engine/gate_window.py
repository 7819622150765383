"""The gate window: outcomes whose candidates wait to be decided together.

Embedding is much faster in length-sorted batches than one reply at a time, so a heavy
gate (one that embeds) collects candidates until the window is full (`gate.window_count`),
its time is up (`gate.window_seconds`), or nothing else in flight could still fill it.
The whole window is then prepared in a worker thread and decided in arrival order, so
keep-first is the order the replies came back, whatever the batches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import anyio
import anyio.to_thread

from engine.dedup.base import Decision, Gate
from engine.io.checkpoint import WorkItem
from engine.stages.base import Outcome

__all__ = ["GateWindow"]

Complete = Callable[[WorkItem, Outcome, list[Decision]], None]


class GateWindow:
    """Collects (item, outcome) pairs and hands each its decisions through ``complete``."""

    def __init__(self, gate: Gate, complete: Complete, in_flight: Callable[[], int]) -> None:
        self.gate = gate
        self._complete = complete
        self._in_flight = in_flight
        self._items: list[tuple[WorkItem, Outcome]] = []
        self._candidates = 0
        self._opened_at = 0.0
        self._opened = asyncio.Event()
        self._kick = asyncio.Event()

    @property
    def pending(self) -> bool:
        return bool(self._items)

    def add(self, item: WorkItem, outcome: Outcome) -> None:
        """Queue an outcome with candidates; decided when the window closes."""
        if not self._items:
            self._opened_at = time.monotonic()
            self._opened.set()
        self._items.append((item, outcome))
        self._candidates += len(outcome.candidates)
        self.kick()

    def kick(self) -> None:
        """Close the window now if it is full, or if nothing else in flight could still fill it."""
        if self._candidates >= self.gate.window_count or len(self._items) >= self._in_flight():
            self._kick.set()

    async def run(self) -> None:
        """Close windows as they fill or time out (runs for the life of the pipeline)."""
        while True:
            await self._opened.wait()  # the first candidate of a window arrived
            wait = self._opened_at + self.gate.window_seconds - time.monotonic()
            if wait > 0 and not self._kick.is_set():
                with anyio.move_on_after(wait):
                    await self._kick.wait()
            self._kick.clear()
            self._opened.clear()
            batch = self._take()
            if batch:
                texts = [c.persona for _, o in batch for c in o.candidates]
                prepared = await anyio.to_thread.run_sync(self.gate.prepare, texts) if self.gate.heavy \
                    else self.gate.prepare(texts)
                self._decide(batch, prepared)

    def flush(self) -> None:
        """Decide the pending window now, in this thread (when the run stops)."""
        batch = self._take()
        if batch:
            self._decide(batch, self.gate.prepare([c.persona for _, o in batch for c in o.candidates]))

    def _take(self) -> list[tuple[WorkItem, Outcome]]:
        batch, self._items, self._candidates = self._items, [], 0
        return batch

    def _decide(self, batch: list[tuple[WorkItem, Outcome]], prepared: object) -> None:
        cands = [c for _, o in batch for c in o.candidates]
        decisions = self.gate.decide(cands, prepared)
        pos = 0
        for item, outcome in batch:
            n = len(outcome.candidates)
            self._complete(item, outcome, decisions[pos : pos + n])
            pos += n
