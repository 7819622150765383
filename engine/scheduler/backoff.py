"""Retry delays: exponential backoff with full jitter, at least the server's Retry-After."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random,
                  retry_after: float | None = None) -> float:
    """Delay before retry number `attempt` (1-based): uniform in [0, min(cap, base*2^(attempt-1))]."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = rng.uniform(ceiling / 2, ceiling)  # "equal jitter": never retries instantly
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
