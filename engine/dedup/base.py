"""What every gate check shares: the decision it returns and the candidate view it reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one candidate persona."""

    accepted: bool
    stage: str = ""  # quality | exact | minhash | semantic (empty when accepted)
    reason: str = ""
    score: float | None = None
    duplicate_of: str | None = None  # id of the kept persona it collides with


ACCEPT = Decision(True)


class Gate:
    """The gate interface the pipeline drives; this base accepts everything."""

    window_count = 1
    window_seconds = 0.0
    heavy = False  # True: prepare() runs in a worker thread
    version = 0  # bumped on every change; a checkpoint snapshots only changed gates

    def prepare(self, texts: list[str]) -> Any:
        return None

    def decide(self, candidates: list[Any], prepared: Any) -> list[Decision]:
        return [Decision(True) for _ in candidates]

    def accepted(self, candidate: Any) -> None:
        """Called for each accepted candidate after its record is written."""

    def save(self, directory: Path) -> None:
        pass

    def load(self, directory: Path) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        return {}
