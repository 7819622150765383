"""Parse rate-limit headers: Retry-After and OpenAI-style x-ratelimit-*."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def duration(value: str | None) -> float | None:
    """Seconds from an OpenAI reset value such as "1s", "6m0s", "20ms" or a bare number."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def ratelimit(headers: Mapping[str, str]) -> tuple[float | None, float | None, float | None, float | None] | None:
    """(remaining requests, remaining tokens, reset requests s, reset tokens s), or None if absent."""
    rr = _number(headers.get("x-ratelimit-remaining-requests"))
    rt = _number(headers.get("x-ratelimit-remaining-tokens"))
    if rr is None and rt is None:
        return None
    return (rr, rt, duration(headers.get("x-ratelimit-reset-requests")),
            duration(headers.get("x-ratelimit-reset-tokens")))
