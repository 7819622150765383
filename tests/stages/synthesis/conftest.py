"""Shared helpers for the synthesis stage tests (the `kit` fixture): a persona, replies, chain drivers.

Under `--import-mode=importlib` a test cannot import this module, so the helpers travel in a fixture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from engine.client.http import EndpointClient
from engine.client.protocol import ChatReply, Usage
from engine.io.checkpoint import WorkItem
from engine.stages.base import Outcome, Stage

PERSONA = {"id": "p-1", "persona": "A beekeeper in the Welsh hills who sells honey at farmers' markets.",
           "source_id": "src-1", "depth": 0, "root_id": "p-1", "relation": None, "parent_id": None}
PARTNER = {"id": "p-2", "persona": "A farmers' market organiser who allocates stalls each season."}


def make_reply(content: str, usage: tuple[int, int] = (10, 5), model: str = "served") -> ChatReply:
    return ChatReply(content=content, model=model, usage=Usage(usage[0], usage[1], sum(usage)),
                     finish_reason="stop", latency=0.0)


def durable(item: WorkItem) -> WorkItem:
    """The item as a resume sees it: through the checkpoint's JSON."""
    return msgspec.json.decode(msgspec.json.encode(item), type=WorkItem)


def run_chain(stages: dict[str, Stage], first: WorkItem, answer: Callable[[WorkItem, Any], str],
              limit: int = 50) -> tuple[list[tuple[str, Any]], list[WorkItem]]:
    """Follow `first` and its follow-ups in process, answering each request with `answer(item, request)`."""
    queue, records, seen = [first], [], []
    while queue:
        item = queue.pop(0)
        seen.append(item)
        assert len(seen) <= limit
        stage = stages[item.stage]
        out: Outcome = stage.parse(item, make_reply(answer(item, stage.request(item))))
        records += out.records
        queue += [durable(f) for f in out.follow]
    return records, seen


async def _over_http(stages: dict[str, Stage], first: WorkItem, base_url: str
                     ) -> tuple[list[tuple[str, Any]], list[WorkItem]]:
    queue, records, seen = [first], [], []
    async with EndpointClient("ep", base_url, request_timeout=10) as client:
        while queue:
            item = queue.pop(0)
            seen.append(item)
            assert len(seen) <= 50
            stage = stages[item.stage]
            reply = await client.complete(stage.request(item))
            out = stage.parse(item, reply)
            records += out.records
            queue += [durable(f) for f in out.follow]
    return records, seen


def run_http(stages: dict[str, Stage], first: WorkItem, base_url: str
             ) -> tuple[list[tuple[str, Any]], list[WorkItem]]:
    """Follow a chain through a real HTTP endpoint (the fake), sending each stage's request."""
    return asyncio.run(_over_http(stages, first, base_url))


@pytest.fixture
def kit() -> SimpleNamespace:
    return SimpleNamespace(persona=dict(PERSONA), partner=dict(PARTNER), reply=make_reply, durable=durable,
                           run_chain=run_chain, run_http=run_http)
