"""The faults FakeOpenAI can inject, and the OpenAI error shapes it answers them with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_RANDOM_KINDS", "ERROR_TYPES", "FAULT_KINDS", "STATUS_FAULTS", "Fault", "FaultKind"]

FaultKind = Literal[
    "429", "500", "503", "slow", "reset", "malformed", "no_usage", "truncated", "400", "401"
]
FAULT_KINDS: tuple[str, ...] = (
    "429", "500", "503", "slow", "reset", "malformed", "no_usage", "truncated", "400", "401"
)
# Random faults default to the retryable ones: a fatal 400/401 would end most runs.
DEFAULT_RANDOM_KINDS: tuple[str, ...] = (
    "429", "500", "503", "reset", "malformed", "no_usage", "truncated"
)
STATUS_FAULTS = {"429": 429, "500": 500, "503": 503, "400": 400, "401": 401}
ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "overloaded"),
}

@dataclass(frozen=True)
class Fault:
    """One injected behaviour, chosen per request."""

    kind: FaultKind
    retry_after: str | None = None  # for 429: seconds ("2") or an HTTP date
    delay: float = 0.0  # for "slow": seconds to sleep before replying

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
