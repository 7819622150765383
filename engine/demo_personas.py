"""Personas for few-shot demonstrations that lack one (persona-enhanced few-shot mode).

Each demonstration without a persona gets one from Text-to-Persona before the run starts;
the answers are cached in OUTDIR/checkpoint/demo_personas.json, so a resume (and every later
run on that output) prompts with the same demonstrations. A demonstration the model could
not give a usable persona for is cached as null and stays plain few-shot for the whole run;
one that failed only on endpoint errors (down, 401) is left out of the cache, so a resume
after the endpoint is fixed asks again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from engine.errors import EndpointError, ReplyError
from engine.ids import content_id
from engine.io.checkpoint import WorkItem
from engine.pipeline import EndpointRuntime
from engine.stages.text_to_persona import TextToPersona

log = logging.getLogger(__name__)


def _read_cache(cache: Path) -> dict[str, str | None]:
    """The cached answers (None: could not be derived), or none when the cache is missing or unreadable."""
    known: dict[str, str | None] = {}
    if cache.exists():
        try:
            known = json.loads(cache.read_text())
        except (OSError, ValueError):
            known = {}
    return known


async def derive(texts: list[str], stage: TextToPersona, endpoint: EndpointRuntime, cache: Path,
                 attempts: int = 4) -> dict[str, str]:
    """{content_id("demo", text): persona} for every text, from the cache or the endpoint."""
    known = _read_cache(cache)
    for text in texts:
        key = content_id("demo", text)
        if key in known:  # derived, or settled as underivable
            continue
        item = WorkItem(key=content_id("demo-t2p", text), stage=stage.name, payload={"source_id": key, "text": text})
        for _ in range(attempts):
            request = stage.request(item)
            try:
                reply = await endpoint.router.complete(request, 0)
                known[key] = stage.parse(item, reply).candidates[0].persona
                break
            except ReplyError:
                known[key] = None  # the model cannot: settled, the demo stays plain few-shot for the whole run
            except EndpointError:
                continue  # the endpoint failed, not the model: left unsettled, a resume asks again
        if key not in known:
            log.warning("endpoint errors while deriving the persona of a demonstration (%.40s...); "
                        "it is plain few-shot until a resume derives it", text)
        elif known[key] is None:
            log.warning("no usable persona for a demonstration (%.40s...); it stays plain few-shot", text)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=1))
    tmp.replace(cache)
    return {key: persona for key, persona in known.items() if persona is not None}
