"""Persona-to-Persona: depth limit, lineage, early stop when nothing new passes the gate, the cap."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from engine import config, runner
from engine.io.sinks import read_records
from engine.testing.fake_openai import run_in_thread

WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper", "kelp",
         "lagoon", "meadow", "nectar", "opal", "prairie", "quartz", "reef", "saffron", "tundra", "umber", "violet")
JOBS = ("nurse", "welder", "pilot", "baker", "farmer", "tailor", "miner", "sailor", "potter", "judge", "chemist")


def _fresh(seed: str) -> str:
    h = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    words = [WORDS[(h >> (5 * i)) % len(WORDS)] for i in range(4)]
    return (f"A {JOBS[h % len(JOBS)]} who collects {words[0]} maps, paints {words[1]} skies "
            f"and studies {words[2]} {words[3]}.")


def _reply(stale: bool) -> Any:
    def reply(body: dict[str, Any]) -> str:
        system, last = body["messages"][0]["content"], body["messages"][-1]["content"]
        if "connected to a text" in system:
            return json.dumps({"persona": _fresh(last)})
        if stale:  # always the same relatives: after the first expansion nothing new passes the gate
            return json.dumps({"relations": [{"relation": "neighbour",
                                              "persona": "A retired postman who tends roses."}]})
        return json.dumps({"relations": [{"relation": "colleague", "persona": _fresh(last + "c")},
                                         {"relation": "friend", "persona": _fresh(last + "f")}]})
    return reply


def _run(tmp_path: Path, stale: bool, **expansion: object) -> tuple[list[dict], list[dict], runner.RunResult]:
    inputs = tmp_path / "in.txt"
    inputs.write_text("".join(f"Bulletin {i} about regional matters number {i * 7}.\n" for i in range(3)))
    with run_in_thread(reply=_reply(stale)) as fake:
        cfg = config.from_dict({
            "run": {"progress": "off"},
            "endpoints": {"fake": {"base_url": fake.base_url, "model": "m"}},
            "text_to_persona": {"endpoint": "fake"},
            "expansion": {"endpoint": "fake", **expansion},
            "synthesis": {"enabled": False},
            "gate": {"semantic": {"enabled": False}},
        })
        result = runner.execute(cfg, tmp_path / "out", [str(inputs)], progress_mode="off")
    return (read_records(tmp_path / "out" / "personas.jsonl.zst"),
            read_records(tmp_path / "out" / "rejected.jsonl.zst"), result)


def test_depth_limit_and_lineage(tmp_path: Path) -> None:
    personas, _, result = _run(tmp_path, stale=False, max_depth=3, relations=2)
    assert result.status == "finished"
    by_id = {p["id"]: p for p in personas}
    depths = [p["depth"] for p in personas]
    assert max(depths) == 3 and depths.count(0) == 3
    assert depths.count(1) == 6 and depths.count(2) == 12 and depths.count(3) == 24  # 2 relations per persona
    for p in personas:
        if p["depth"]:
            parent = by_id[p["parent_id"]]
            assert parent["depth"] == p["depth"] - 1 and p["root_id"] == parent["root_id"]
            assert p["relation"] in ("colleague", "friend") and p["source_id"] == parent["source_id"]
        else:
            assert p["root_id"] == p["id"] and p["relation"] is None and p["parent_id"] is None
    assert result.counters["done.persona_to_persona"] == 3 + 6 + 12  # depth 3 personas are not expanded


def test_expansion_stops_early_when_nothing_new_passes_the_gate(tmp_path: Path) -> None:
    personas, rejected, result = _run(tmp_path, stale=True, max_depth=6)
    assert [p["depth"] for p in personas].count(1) == 1  # the first "retired postman" only
    assert max(p["depth"] for p in personas) == 1
    assert rejected and all(r["stage"] == "exact" for r in rejected)
    # the 3 roots and the one accepted relative were expanded; nothing new passed, so rounds 2..6 never ran
    assert result.counters["done.persona_to_persona"] == 4


def test_max_personas_caps_expansion(tmp_path: Path) -> None:
    personas, _, _ = _run(tmp_path, stale=False, max_depth=6, relations=2, max_personas=15)
    assert 15 <= len(personas) <= 15 + 2


def test_resume_keeps_the_spawner_state_until_it_is_attached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint written while a resume opens (before the Spawner exists) keeps the Spawner's counters."""
    from engine import method
    from engine.io.checkpoint import Checkpointer

    _run(tmp_path, stale=False, max_depth=2, relations=2)
    before = Checkpointer(tmp_path / "out").load(None).extra["spawner"]
    assert before["expanded"] == 3 + 6

    class Crash(Exception):
        pass

    def crash(*_: object) -> None:
        raise Crash  # a kill right after the resume's first checkpoint

    monkeypatch.setattr(method, "Spawner", crash)
    with pytest.raises(Crash):
        _run(tmp_path, stale=False, max_depth=2, relations=2)
    state = Checkpointer(tmp_path / "out").load(None)
    assert state.seq > 0 and state.extra["spawner"] == before
