"""engine/demo_personas.py `derive`: personas for demonstrations that lack one, via Text-to-Persona, cached.

Each call runs against a fake OpenAI server through the engine's own router, so the tests count the
requests that really went out: a second call must be answered from OUTDIR/checkpoint/demo_personas.json
alone, and a demonstration whose persona cannot be derived falls back to plain few-shot.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from engine import config, runner
from engine.config import Synthesis
from engine.demo_personas import derive
from engine.stages.synthesis import demo_key, demos_missing_personas, task_item
from engine.stages.synthesis.knowledge import Knowledge
from engine.stages.text_to_persona import TextToPersona
from engine.testing.fake_openai import Fault, run_in_thread
from engine.testing.scripted import MethodModel

TEXTS = ["Hexagonal cells use the least wax for the most storage.",
         "Staling is starch recrystallising, not bread drying out.",
         "A sextant measures the angle between a star and the horizon."]
GARBAGE = "no persona here, and no JSON either"


class Server:
    """Replies from `reply`, keeping the text of every Text-to-Persona request in arrival order."""

    def __init__(self, reply: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.reply = reply or MethodModel()
        self.texts: list[str] = []
        self.answers: dict[str, str] = {}
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        last = body["messages"][-1]["content"]  # "Text: {text}\n\n{relation} {granularity} {format}"
        text = last.removeprefix("Text: ").rsplit("\n\n", 1)[0]
        answer = self.reply(body)
        with self.lock:
            self.texts.append(text)
            self.answers[text] = answer
        return answer

    def count(self, text: str) -> int:
        return self.texts.count(text)


def _derive(base_url: str, texts: list[str], cache: Path, **kw: Any) -> dict[str, str]:
    """One `derive` call as the runner makes it: Text-to-Persona's endpoint and stage, started and closed."""
    cfg = config.from_dict({
        "endpoints": {"fake": {"base_url": base_url, "model": "m", "breaker_failures": 100}},
        "text_to_persona": {"endpoint": "fake"},
        "expansion": {"enabled": False},
        "synthesis": {"enabled": False},
    })
    endpoints = runner.build_endpoints(cfg, None)
    ep = endpoints["fake"]
    stage = TextToPersona(cfg.text_to_persona, model=ep.model)

    async def go() -> dict[str, str]:
        await ep.router.start()
        try:
            return await derive(texts, stage, ep, cache, **kw)
        finally:
            await ep.router.close()

    return asyncio.run(go())


def _persona_of(answer: str) -> str:
    return str(json.loads(answer)["persona"])


def test_derives_caches_and_reuses_the_cache_without_requests(tmp_path: Path) -> None:
    cache = tmp_path / "checkpoint" / "demo_personas.json"
    server = Server()
    with run_in_thread(reply=server) as fake:
        first = _derive(fake.base_url, TEXTS, cache)
        assert fake.stats.requests == len(TEXTS)
        assert [server.count(t) for t in TEXTS] == [1, 1, 1]
        assert first == {demo_key(t): _persona_of(server.answers[t]) for t in TEXTS}
        assert json.loads(cache.read_text()) == first
        again = _derive(fake.base_url, TEXTS, cache)
        assert again == first and fake.stats.requests == len(TEXTS)  # from the cache alone
        # a new demonstration (another task turned persona_enhanced) asks for that one only
        extra = "Tides follow the Moon, twice a day, about 50 minutes later each day."
        grown = _derive(fake.base_url, [*TEXTS, extra], cache)
        assert fake.stats.requests == len(TEXTS) + 1 and server.count(extra) == 1
        assert grown == {**first, demo_key(extra): _persona_of(server.answers[extra])}
        assert json.loads(cache.read_text()) == grown
    assert not list(cache.parent.glob("*.tmp"))


def test_an_unreadable_cache_is_derived_again(tmp_path: Path) -> None:
    cache = tmp_path / "demo_personas.json"
    cache.write_text('{"half a file')
    with run_in_thread(reply=Server()) as fake:
        got = _derive(fake.base_url, TEXTS[:2], cache)
        assert fake.stats.requests == 2
    assert set(got) == {demo_key(t) for t in TEXTS[:2]} and json.loads(cache.read_text()) == got


def test_a_persona_that_cannot_be_derived_is_left_out_after_every_attempt(tmp_path: Path) -> None:
    """Unusable replies (text 1) and server errors (text 2) are tried `attempts` times, then that demo has none."""
    cache = tmp_path / "demo_personas.json"
    model = MethodModel()

    def reply(body: dict[str, Any]) -> str:
        return GARBAGE if TEXTS[1] in body["messages"][-1]["content"] else model(body)

    def faults(n: int, body: dict[str, Any]) -> Fault | None:
        return Fault("500") if TEXTS[2] in body["messages"][-1]["content"] else None

    server = Server(reply)
    with run_in_thread(reply=server, faults=faults) as fake:
        got = _derive(fake.base_url, TEXTS, cache, attempts=3)
        assert fake.stats.requests == 1 + 3 + 3
        assert fake.stats.by_status[500] == 3
    assert [server.count(t) for t in TEXTS[:2]] == [1, 3]  # the 500s never reach the reply callable
    assert got == {demo_key(TEXTS[0]): _persona_of(server.answers[TEXTS[0]])}
    cached = json.loads(cache.read_text())
    assert cached[demo_key(TEXTS[0])] == got[demo_key(TEXTS[0])]
    assert cached[demo_key(TEXTS[1])] is None  # the model failed: settled for the run
    assert demo_key(TEXTS[2]) not in cached  # the endpoint failed: a resume asks again


def _knowledge_prompt(demo_personas: dict[str, str]) -> list[Any]:
    """The knowledge task's prompt for one persona, with all three packaged demonstrations (persona_enhanced)."""
    syn = msgspec.convert({"tasks": ["knowledge"], "knowledge": {"shots": 3}}, Synthesis)
    stage = Knowledge(syn.knowledge, mode="persona_enhanced", endpoint="fake", model="m",
                      demo_personas=demo_personas)
    persona = {"id": "p-1", "persona": "A ferry pilot who reads tide tables.", "source_id": "s", "depth": 0}
    return stage.messages(task_item("knowledge", persona))


def test_a_resume_after_a_failed_derivation_prompts_with_the_same_demonstrations(tmp_path: Path) -> None:
    cache = tmp_path / "checkpoint" / "demo_personas.json"
    texts = demos_missing_personas(msgspec.convert({"tasks": ["knowledge"]}, Synthesis))
    assert len(texts) == 1
    with run_in_thread(reply=Server(lambda body: GARBAGE)) as fake:  # the first run: no persona for it
        first = _derive(fake.base_url, texts, cache)
        assert fake.stats.requests == 4  # derive's default attempts
    assert first == {}
    before = _knowledge_prompt(first)
    with run_in_thread(reply=Server()) as fake:  # the resume: the server answers now
        second = _derive(fake.base_url, texts, cache)
        resumed_requests = fake.stats.requests
    assert second == first and resumed_requests == 0
    assert _knowledge_prompt(second) == before
