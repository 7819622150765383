"""The records written to the output files (see INTERFACE.md "Records")."""

from __future__ import annotations

import time

import msgspec


def now_iso() -> str:
    """UTC timestamp in ISO 8601 with seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Usage(msgspec.Struct, frozen=True):
    """Token usage of the request(s) behind a record."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Persona(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted persona."""

    id: str
    persona: str
    source_id: str
    relation: str | None = None
    parent_id: str | None = None
    root_id: str
    depth: int = 0
    model: str = ""
    created_at: str = ""
    usage: Usage | None = None


class Rejected(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate persona the gate turned away (audit trail)."""

    id: str
    persona: str
    source_id: str
    parent_id: str | None = None
    depth: int = 0
    stage: str  # quality | exact | minhash | semantic
    reason: str
    score: float | None = None
    duplicate_of: str | None = None
    relation: str | None = None
    created_at: str = ""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """Work that failed for good, with the reason and the raw reply."""

    id: str
    source_id: str
    stage: str
    reason: str
    attempts: int
    raw: str = ""
    payload: str = ""  # the work's payload as a JSON object in a string: one column type for every stage
    created_at: str = ""
