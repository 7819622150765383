"""Live status of a job's child, read from its output dir; rates, ETA and the progress line.

`persona run` writes OUTDIR/checkpoint/status.json every couple of seconds (counters,
elapsed, total, in flight, queue, endpoints, latency); when it is missing (an older
engine, or a child that never got that far) the checkpoint's state.json counters stand in.
"""

from __future__ import annotations

import io
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from engine.scheduler.progress import Progress

RATE_WINDOW_S = 60.0


@dataclass
class Snapshot:
    """One reading of a child's status."""

    counters: dict[str, int] = field(default_factory=dict)
    updated: float = 0.0  # unix time the child wrote it
    elapsed: float = 0.0
    total: int | None = None
    state: str = ""
    in_flight: int = 0
    queue: dict[str, int] = field(default_factory=dict)
    endpoints: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_buckets: dict[str, Any] = field(default_factory=dict)
    checkpoint_mtime: float | None = None
    source: str = ""  # status.json | state.json | ""


def _load(path: Path) -> dict[str, Any] | None:
    try:
        doc = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _ints(d: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in d.items() if isinstance(v, (int, float))} if isinstance(d, dict) else {}


def read(outdir: Path) -> Snapshot:
    """The freshest status of the run in `outdir` (empty when nothing was written yet)."""
    ck = outdir / "checkpoint"
    snap = Snapshot()
    try:
        snap.checkpoint_mtime = (ck / "state.json").stat().st_mtime
    except OSError:
        pass
    doc = _load(ck / "status.json")
    if doc is not None:
        snap.source = "status.json"
        snap.counters = _ints(doc.get("counters"))
        snap.updated = float(doc.get("updated") or 0.0)
        snap.elapsed = float(doc.get("elapsed") or 0.0)
        total = doc.get("total")
        snap.total = int(total) if isinstance(total, (int, float)) else None
        snap.state = str(doc.get("state") or "")
        snap.in_flight = int(doc.get("in_flight") or 0)
        snap.queue = _ints(doc.get("queue"))
        eps = doc.get("endpoints")
        snap.endpoints = {str(k): v for k, v in eps.items() if isinstance(v, dict)} if isinstance(eps, dict) else {}
        lat = doc.get("latency_buckets")
        snap.latency_buckets = lat if isinstance(lat, dict) else {}
        return snap
    if snap.checkpoint_mtime is not None:
        state = _load(ck / "state.json")
        if state is not None:
            snap.source = "state.json"
            snap.counters = _ints(state.get("counters"))
            snap.updated = snap.checkpoint_mtime
            snap.state = "finished" if state.get("finished") else ""
    return snap


class Tracker:
    """Follows one job's snapshots: rates over the last minute, ETA, and the progress line."""

    def __init__(self) -> None:
        self.snap = Snapshot()
        self._samples: deque[tuple[float, int, int, int]] = deque()
        self._progress = Progress(Counter(), mode="log", stream=io.StringIO())
        self._progress.begin()
        self.line = ""

    def restart(self) -> None:
        """A new child: rates and ETA start over (its counters continue from the checkpoint)."""
        self._samples.clear()
        self._progress = Progress(Counter(self.snap.counters), mode="log", stream=io.StringIO())
        self._progress.begin()
        self._progress.line()  # prime its last sample: the first rate then spans this child only

    def update(self, snap: Snapshot, now: float | None = None) -> None:
        """Take a new reading; rates and the progress line move only when the child wrote anew."""
        fresh = snap.updated != self.snap.updated or snap.source != self.snap.source
        self.snap = snap
        if not fresh or not snap.source:
            return
        now = time.monotonic() if now is None else now
        c = snap.counters
        self._samples.append((now, c.get("requests", 0), c.get("prompt_tokens", 0) + c.get("completion_tokens", 0),
                              c.get("inputs_done", 0)))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        self._progress.counters = Counter(c)
        self._progress.total = snap.total
        self.line = self._progress.line()

    def rates(self) -> tuple[float, float, float]:
        """(requests/s, tokens/s, inputs/s) over the samples of the last minute."""
        if len(self._samples) < 2:
            return 0.0, 0.0, 0.0
        (t0, r0, k0, i0), (t1, r1, k1, i1) = self._samples[0], self._samples[-1]
        dt = max(1e-6, t1 - t0)
        return max(0, r1 - r0) / dt, max(0, k1 - k0) / dt, max(0, i1 - i0) / dt

    def eta(self) -> float | None:
        total = self.snap.total
        rate = self.rates()[2]
        if not total or rate <= 0:
            return None
        return max(0.0, total - self.snap.counters.get("inputs_done", 0)) / rate
