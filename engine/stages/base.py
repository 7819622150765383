"""A stage turns a work item into a chat request and the reply into an outcome.

Subclasses implement two hooks, `request` and `parse`; the scheduler owns the loop,
retries, limits, statistics and timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.client.protocol import ChatReply, ChatRequest
from engine.io.checkpoint import WorkItem


@dataclass
class Candidate:
    """A persona proposed by a stage; it becomes a record only once the gate accepts it."""

    id: str
    persona: str
    source_id: str
    root_id: str | None  # None: the persona is its own root (depth 0)
    parent_id: str | None = None
    relation: str | None = None
    depth: int = 0
    model: str = ""
    usage: dict[str, int] | None = None


@dataclass
class Outcome:
    """What a parsed reply yields: candidates for the gate, records for sinks, follow-up work."""

    candidates: list[Candidate] = field(default_factory=list)
    records: list[tuple[str, Any]] = field(default_factory=list)  # (sink name, record)
    follow: list[WorkItem] = field(default_factory=list)


class Stage:
    """Base class of the LLM stages."""

    name: ClassVar[str] = ""

    def __init__(self, *, endpoint: str, model: str, parse_retries: int = 3) -> None:
        self.endpoint = endpoint
        self.model = model
        self.parse_retries = parse_retries

    def request(self, item: WorkItem) -> ChatRequest:
        """Build the chat request for `item`."""
        raise NotImplementedError

    def parse(self, item: WorkItem, reply: ChatReply) -> Outcome:
        """Validate the reply; raise `ReplyError` (with the raw text) when it cannot be used."""
        raise NotImplementedError

    def snapshot(self) -> Any:
        """State the stage keeps between items (e.g. votes being gathered), saved with checkpoints."""
        return None

    def restore(self, data: Any) -> None:
        """Take back what `snapshot` returned, on resume."""


def usage_dict(reply: ChatReply) -> dict[str, int] | None:
    u = reply.usage
    if u is None:
        return None
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}
