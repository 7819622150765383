"""Fair shares of shared endpoints between running jobs (pure arithmetic, no I/O).

Jobs that use the same server (same base URL) split its capacity by weight: max in flight
by largest remainder (at least 1 each), requests/min and tokens/min in proportion. The
capacity is the daemon config's `[endpoints.*]` entry for that URL, else the smallest value
any running job declares for it (each job states what the server can take; the most
careful statement wins). A child's share changes only through a restart, so restarts
follow a hysteresis rule (`needs_restart`): shrink at once when a child holds more than
25 % over its share, grow only when the share at least doubled and the child has run a
while. The sum over jobs can so exceed a server's capacity by at most 25 % for a time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Use:
    """What a job's config declares for one endpoint name: its server and limits (0 = none)."""

    server: str  # settings.server_key(base_url), or "embedded:<job>" (never shared)
    max_in_flight: int
    rpm: float = 0.0
    tpm: float = 0.0


@dataclass(frozen=True)
class Allot:
    """What one job's child gets for one endpoint name."""

    max_in_flight: int
    rpm: float = 0.0
    tpm: float = 0.0


@dataclass(frozen=True)
class Demand:
    job: str
    weight: float
    uses: dict[str, Use]  # by endpoint name in the job's config


def _split(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of `total` by weight, at least 1 each."""
    w_sum = sum(weights.values())
    exact = {k: total * w / w_sum for k, w in weights.items()}
    out = {k: max(1, math.floor(v)) for k, v in exact.items()}
    left = total - sum(out.values())
    for k in sorted(exact, key=lambda k: (exact[k] - math.floor(exact[k]), k), reverse=True):
        if left <= 0:
            break
        out[k] += 1
        left -= 1
    return out


def _min_positive(values: list[float]) -> float:
    pos = [v for v in values if v > 0]
    return min(pos) if pos else 0.0


def allot(demands: list[Demand], capacity: dict[str, Use] | None = None) -> dict[str, dict[str, Allot]]:
    """Each job's allotment per endpoint name, given every running job's demand."""
    capacity = capacity or {}
    by_server: dict[str, list[tuple[Demand, str, Use]]] = defaultdict(list)
    for d in demands:
        for name, use in d.uses.items():
            by_server[use.server].append((d, name, use))
    out: dict[str, dict[str, Allot]] = {d.job: {} for d in demands}
    for server, users in by_server.items():
        cap = capacity.get(server)
        in_flight = cap.max_in_flight if cap else min(u.max_in_flight for _, _, u in users)
        rpm = cap.rpm if cap else _min_positive([u.rpm for _, _, u in users])
        tpm = cap.tpm if cap else _min_positive([u.tpm for _, _, u in users])
        weights: dict[str, float] = defaultdict(float)
        for d, _, _ in users:
            weights[d.job] = d.weight  # a job counts once per server, however many names point at it
        w_sum = sum(weights.values())
        slots = _split(in_flight, dict(weights))
        for d, name, _ in users:
            f = d.weight / w_sum
            out[d.job][name] = Allot(slots[d.job], rpm * f, tpm * f)
    return out


def needs_restart(current: dict[str, Allot], target: dict[str, Allot], *, ran_for: float,
                  grow_after: float) -> bool:
    """Whether a running child should restart to take its new share (see the module docstring)."""
    for name, t in target.items():
        c = current.get(name)
        if c is None:
            continue
        if c.max_in_flight > math.ceil(t.max_in_flight * 1.25):
            return True
        for cv, tv in ((c.rpm, t.rpm), (c.tpm, t.tpm)):
            if tv > 0 and (cv == 0 or cv > tv * 1.25):
                return True
        if ran_for >= grow_after and (t.max_in_flight >= 2 * c.max_in_flight
                                      or (c.rpm > 0 and t.rpm >= 2 * c.rpm)):
            return True
    return False
