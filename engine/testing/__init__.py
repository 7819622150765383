"""Test helpers: a fake OpenAI-compatible server that injects faults and enforces budgets.

Names load lazily, so ``python -m engine.testing.fake_openai`` runs without a runpy warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.testing.fake_openai import (
        FAULT_KINDS,
        FakeOpenAI,
        FakeStats,
        Fault,
        estimate_tokens,
        run_in_thread,
    )

__all__ = ["FAULT_KINDS", "FakeOpenAI", "FakeStats", "Fault", "estimate_tokens", "run_in_thread"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from engine.testing import fake_openai

        return getattr(fake_openai, name)
    raise AttributeError(f"module 'engine.testing' has no attribute {name!r}")
