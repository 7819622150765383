"""What every gate check shares: the decision it returns and the candidate view it reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one candidate persona."""

    accepted: bool
    stage: str = ""  # quality | exact | minhash | semantic (empty when accepted)
    reason: str = ""
    score: float | None = None
    duplicate_of: str | None = None  # id of the kept persona it collides with


ACCEPT = Decision(True)
