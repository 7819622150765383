"""Synthesis through the real runner: Text-to-Persona -> gate -> expansion -> every task, against a fake server.

The fake answers every role with MethodModel (wrapped to keep each request body), so these tests see
both sides: the records in the task files and the prompts the stages sent (demonstrations per mode,
derived demonstration personas, conversation turns, what is not sent with `tool.implement = false`),
and how unparseable replies are retried and dead-lettered.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine import config, runner
from engine.config import Config
from engine.io.sinks import read_records
from engine.stages.synthesis import CREATE, demo_key, demos_missing_personas
from engine.stages.synthesis.base import Demo, load_demos, load_template
from engine.testing.fake_openai import run_in_thread
from engine.testing.scripted import MethodModel

TASKS = ("math", "logic", "instruction", "knowledge", "npc", "tool")
# the start of each task's first-stage system prompt (before any placeholder, e.g. npc's {world})
CREATE_SYSTEM = {t: load_template(t).system.split("{")[0].strip()[:40] for t in TASKS}
IMPLEMENT_SYSTEM = load_template("tool_implement").system
T2P_SYSTEM = "connected to a text"
GARBAGE = "I am sorry, I cannot answer that in JSON today."


class Recorder:
    """A reply callable that keeps every request body and answers with `inner`."""

    def __init__(self, inner: Callable[[dict[str, Any]], str]) -> None:
        self.inner = inner
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        with self.lock:
            self.bodies.append(body)
        return self.inner(body)

    def create_bodies(self, task: str) -> list[dict[str, Any]]:
        """The request bodies of `task`'s first stage (the one that takes demonstrations)."""
        return [b for b in self.bodies if b["messages"][0]["content"].startswith(CREATE_SYSTEM[task])]


def _inputs(tmp_path: Path, n: int = 2) -> Path:
    p = tmp_path / "in.txt"
    p.write_text("".join(f"Harbour bulletin {i}: the ferry timetable changes for pier {i * 7}.\n" for i in range(n)))
    return p


def _config(base_url: str, synthesis: dict[str, Any]) -> Config:
    return config.from_dict({
        "run": {"progress": "off", "checkpoint_interval": 0.5},
        "endpoints": {"fake": {"base_url": base_url, "model": "m", "backoff_base": 0.01, "backoff_max": 0.05}},
        "text_to_persona": {"endpoint": "fake"},
        "expansion": {"endpoint": "fake", "max_depth": 1, "relations": 2},
        "synthesis": {"endpoint": "fake", **synthesis},
        "gate": {"semantic": {"enabled": False}, "window_seconds": 0.2},
    })


def _run(tmp_path: Path, reply: Callable[[dict[str, Any]], str], synthesis: dict[str, Any]
         ) -> tuple[Config, Recorder, runner.RunResult, Path]:
    rec = Recorder(reply)
    out = tmp_path / "out"
    with run_in_thread(reply=rec) as fake:
        cfg = _config(fake.base_url, synthesis)
        result = runner.execute(cfg, out, [str(_inputs(tmp_path))], progress_mode="off")
    assert result.status == "finished", result.error
    return cfg, rec, result, out


def _accepted(out: Path) -> dict[str, dict[str, Any]]:
    personas = {p["id"]: p for p in read_records(out / "personas.jsonl.zst")}
    assert {p["depth"] for p in personas.values()} == {0, 1}  # roots and one round of expansion
    return personas


def _demo_of(task: str, answer: str) -> Demo:
    """The demonstration whose output an assistant demonstration turn holds."""
    keys = CREATE[task].keys
    doc = json.loads(answer)
    found = [d for d in load_demos(task, "", keys) if {k: d.output[k] for k in keys} == doc]
    assert len(found) == 1, (task, answer[:80])
    return found[0]


@pytest.mark.parametrize("mode", ["zero_shot", "few_shot", "persona_enhanced"])
def test_every_mode_through_the_runner(tmp_path: Path, mode: str) -> None:
    # knowledge prompts hold all three packaged demonstrations, so each holds the one without a persona
    cfg, rec, result, out = _run(tmp_path, MethodModel(), {"mode": mode, "knowledge": {"shots": 3}})
    accepted = _accepted(out)
    assert result.counters["dead"] == 0
    for task in TASKS:
        records = read_records(out / f"{task}.jsonl.zst")
        assert records, task
        # every accepted persona synthesised exactly once per task
        assert Counter(r["persona_id"] for r in records) == Counter(list(accepted)), task
        for r in records:
            assert r["task"] == task
            assert r["mode"] == ("zero_shot" if r.get("kind") == "dialogue" else mode), (task, r["mode"])
            assert r["persona"] == accepted[r["persona_id"]]["persona"]
            assert r["model"] == "m" and r["usage"]["total_tokens"] > 0

    cache = out / "checkpoint" / "demo_personas.json"
    derived: dict[str, str] = json.loads(cache.read_text()) if mode == "persona_enhanced" else {}
    assert cache.exists() == (mode == "persona_enhanced")
    own = {t: {d.persona for d in load_demos(t, "", CREATE[t].keys) if d.persona} for t in TASKS}
    derived_in_prompts = 0
    for task in TASKS:
        bodies = rec.create_bodies(task)
        assert len(bodies) == len(accepted), task
        shots = cfg.synthesis.task(task).shots
        for body in bodies:
            msgs = body["messages"]
            n_demo = len(msgs) - 2
            assert n_demo == (0 if mode == "zero_shot" else 2 * shots), (task, n_demo)
            assert [m["role"] for m in msgs] == ["system", *["user", "assistant"] * (n_demo // 2), "user"]
            for ask, answer in zip(msgs[1:-1:2], msgs[2:-1:2], strict=True):
                demo = _demo_of(task, answer["content"])
                if mode == "few_shot":  # plain demonstrations: no persona in the demonstration turns
                    assert not any(p in ask["content"] for p in own[task] | set(derived.values())), task
                    continue
                expected = demo.persona or derived[demo_key(demo.text)]
                assert expected in ask["content"], (task, expected)
                derived_in_prompts += demo.persona is None
    if mode == "persona_enhanced":
        # one derived persona per demonstration without one, asked of Text-to-Persona before the run
        missing = demos_missing_personas(cfg.synthesis)
        assert len(missing) == len(TASKS)  # the packaged demos: one per task lacks a persona
        assert set(derived) == {demo_key(t) for t in missing}
        assert all(v.strip() for v in derived.values())
        t2p_texts = [b["messages"][-1]["content"] for b in rec.bodies if T2P_SYSTEM in b["messages"][0]["content"]]
        for text in missing:
            assert sum(text in t for t in t2p_texts) == 1
        assert derived_in_prompts >= len(accepted)  # the knowledge prompts at least
    else:  # no demonstration was sent to Text-to-Persona
        texts = [d.text for t in TASKS for d in load_demos(t, "", CREATE[t].keys)]
        assert not [b for b in rec.bodies if any(t in b["messages"][-1]["content"] for t in texts)]


def test_conversations_dialogues_and_tools_without_implementation(tmp_path: Path) -> None:
    syn = {"mode": "zero_shot", "instruction": {"turns": 1, "dialogue": True}, "tool": {"implement": False}}
    cfg, rec, result, out = _run(tmp_path, MethodModel(), syn)
    accepted = _accepted(out)
    assert result.counters["dead"] == 0
    records = read_records(out / "instruction.jsonl.zst")
    kinds = Counter(r["kind"] for r in records)
    # each persona's prompt becomes a conversation; each persona after the first also talks with the one before
    assert kinds == {"conversation": len(accepted), "dialogue": len(accepted) - 1}
    partners: list[str] = []
    for r in records:
        roles = [m["role"] for m in r["messages"]]
        assert r["instruction"] == r["messages"][0]["content"]
        if r["kind"] == "conversation":
            # SCHEMA.md: 2 + 2 x turns messages, user / assistant alternating, ending with the assistant's reply
            assert roles == ["user", "assistant"] * (1 + cfg.synthesis.instruction.turns)
            assert r["partner_id"] is None and r["mode"] == "zero_shot"
        else:
            assert roles == ["persona", "partner"] * (cfg.synthesis.instruction.dialogue_turns // 2)
            assert r["partner_id"] in accepted and r["partner_id"] != r["persona_id"]
            assert r["partner"] == accepted[r["partner_id"]]["persona"]
            partners.append(r["partner_id"])
    assert len(set(partners)) == len(partners)  # a chain of partners: each persona partners the next one once
    tools = read_records(out / "tool.jsonl.zst")
    assert Counter(t["persona_id"] for t in tools) == Counter(list(accepted))
    assert all(t["implementation"] is None and t["name"] == "count_frames" for t in tools)
    assert not [b for b in rec.bodies if b["messages"][0]["content"] == IMPLEMENT_SYSTEM]
    assert result.counters["done.tool.implement"] == 0


def test_unparseable_replies_are_retried_then_dead_lettered(tmp_path: Path) -> None:
    retries = 2
    model = MethodModel()

    def reply(body: dict[str, Any]) -> str:
        if body["messages"][0]["content"].startswith(CREATE_SYSTEM["knowledge"]):
            return GARBAGE
        return model(body)

    syn = {"mode": "zero_shot", "knowledge": {"parse_retries": retries}}
    _, rec, result, out = _run(tmp_path, reply, syn)
    accepted = _accepted(out)
    tries = retries + 1
    assert read_records(out / "knowledge.jsonl.zst") == []
    dead = read_records(out / "dead_letter.jsonl.zst")
    assert len(dead) == len(accepted)
    assert {json.loads(d["payload"])["persona_id"] for d in dead} == set(accepted)
    for d in dead:
        persona = accepted[json.loads(d["payload"])["persona_id"]]
        assert d["stage"] == "knowledge" and d["attempts"] == tries
        assert d["raw"] == GARBAGE
        assert d["reason"].startswith(f"unusable reply after {tries} tries")
        assert d["source_id"] == persona["source_id"]
    assert len(rec.create_bodies("knowledge")) == len(accepted) * tries
    assert result.counters["dead.knowledge"] == len(accepted) == result.counters["dead"]
    assert result.counters["bad_replies"] == len(accepted) * tries
    for task in TASKS:
        if task != "knowledge":
            records = read_records(out / f"{task}.jsonl.zst")
            assert Counter(r["persona_id"] for r in records) == Counter(list(accepted)), task
