"""An output directory written with the engine's own sinks, with known counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.io.checkpoint import Checkpointer, State
from engine.io.sinks import ZstdJsonlSink
from engine.records import DeadLetter, Persona, Rejected, Usage

# four topics, three close personas each; each persona's outputs stay on its topic
TOPICS = {
    "baking": (
        ["A pastry chef who runs a small French bakery.",
         "A baker who makes sourdough bread in a family bakery.",
         "A cake decorator who bakes wedding cakes in her bakery."],
        ["A baker makes 24 croissants per tray and bakes 7 trays. How many croissants does the bakery sell "
         "if 15 are left?",
         "A sourdough loaf needs 500 g of flour. How much flour does the bakery need for 36 loaves of bread?",
         "A wedding cake has 3 tiers; each tier of cake needs 4 eggs. How many eggs are needed for 5 cakes?"],
        "How do I keep my sourdough starter alive while the bakery is closed?"),
    "astronomy": (
        ["An astronomer who studies exoplanets with space telescopes.",
         "An astrophysicist researching distant exoplanet atmospheres with telescopes.",
         "A planetary scientist who searches for exoplanets around nearby stars."],
        ["An exoplanet orbits its star every 12 days. How many orbits does the planet complete in one Earth year?",
         "A telescope observes a planet transit lasting 3 hours every 9 days. How many hours of transit "
         "occur in 90 days?",
         "A star is 40 light years away. How many years does its light take to reach a telescope on Earth?"],
        "Explain how the transit method detects exoplanets around distant stars."),
    "fishing": (
        ["A fisherman who sails a trawler in the North Sea.",
         "A commercial fisher who works on a fishing boat off the coast of Norway.",
         "A deckhand on a North Sea fishing trawler who hauls nets."],
        ["A trawler catches 350 kg of cod per haul. How many hauls are needed to fill a 2800 kg hold?",
         "A fishing boat sails 18 nautical miles out to sea at 6 knots. How long does the trip take?",
         "Each fishing net holds 120 fish. How many fish do 9 nets on the trawler hold?"],
        "What are the cod fishing quotas for trawlers in the North Sea this year?"),
    "jazz": (
        ["A jazz saxophonist who plays in late-night clubs.",
         "A jazz musician who performs saxophone solos in a quartet at clubs.",
         "A club saxophone player in a jazz band who improvises every night."],
        ["A jazz quartet plays 4 sets of 45 minutes each night. How many hours of music is that over 5 nights?",
         "A saxophonist practises scales for 25 minutes and solos for 35. What fraction of the hour are the solos?",
         "A jazz club sells 80 tickets at $15. How much does the band earn if it gets 60% of sales?"],
        "Suggest some jazz standards for a saxophone solo in a late-night club set."),
}
# topic 0: a chain of depths 0, 1, 2; the others: a root and two children at depth 1
RELATIONS = ["colleague", "student", "colleague", "Sibling", "colleague", "student", "mentor", "colleague"]
PRICES = {"m-small": {"prompt": 1.0, "completion": 2.0}, "m-big": {"prompt": 10.0, "completion": 30.0}}
COUNTERS = {"prompt_tokens": 2000, "completion_tokens": 1200, "requests": 60, "inputs_done": 6}


def pid(t: int, k: int) -> str:
    return f"p{t}{k}"


def write(path: Path, records: list) -> None:
    sink = ZstdJsonlSink(path)
    for i, r in enumerate(records):
        sink.write(r)
        if i % 4 == 3:
            sink.flush()  # several frames, as a run writes them
    sink.close()


def build(outdir: Path, *, tasks: bool = True, checkpoint: bool = True) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    personas = []
    rel = iter(RELATIONS)
    for t, (ps, _, _) in enumerate(TOPICS.values()):
        for k, text in enumerate(ps):
            depth = k if t == 0 else min(k, 1)
            relation = next(rel) if depth else None
            parent = None if depth == 0 else (pid(t, k - 1) if depth == 2 else pid(t, 0))
            personas.append(Persona(id=pid(t, k), persona=text, source_id=f"in{t}", relation=relation,
                                    parent_id=parent, root_id=pid(t, 0), depth=depth, model="m-small",
                                    usage=Usage(10, 5, 15)))
    write(outdir / "personas.jsonl.zst", personas)
    # accepted: depth 0: 4, depth 1: 7, depth 2: 1
    rejected = [
        Rejected(id="r1", persona="hi", source_id="in8", depth=0, stage="quality", reason="too_short"),
        Rejected(id="r2", persona="ok", source_id="in9", depth=0, stage="quality", reason="too_short"),
        Rejected(id="r3", persona="x", source_id="in0", depth=1, stage="exact", reason="duplicate", score=1.0,
                 duplicate_of="p00"),
        Rejected(id="r4", persona="y", source_id="in0", depth=1, stage="minhash", reason="near_duplicate",
                 score=0.93, duplicate_of="p01"),
        *[Rejected(id=f"r{5 + i}", persona="z", source_id="in1", depth=1 + i // 2, stage="semantic",
                   reason="similar", score=0.95, duplicate_of="p10") for i in range(4)],
    ]
    write(outdir / "rejected.jsonl.zst", rejected)
    dead = [
        DeadLetter(id="d1", source_id="in7", stage="text_to_persona", reason="gave up after 7 attempts: HTTP 500",
                   attempts=7),
        DeadLetter(id="d2", source_id="in2", stage="persona_to_persona",
                   reason="unusable reply after 4 tries: reply has no list 'relations'", attempts=4, raw="{}"),
        DeadLetter(id="d3", source_id="in3", stage="persona_to_persona",
                   reason="unusable reply after 4 tries: reply names no related persona", attempts=4, raw="[]"),
        DeadLetter(id="d4", source_id="in3", stage="math.solve", reason="unusable reply after 4 tries: no answer",
                   attempts=4),
    ]
    write(outdir / "dead_letter.jsonl.zst", dead)
    if tasks:
        math, instr = [], []
        n = 0
        for t, (ps, problems, question) in enumerate(TOPICS.values()):
            for k, (persona, problem) in enumerate(zip(ps, problems, strict=True)):
                math.append({"id": f"m{t}{k}", "persona_id": pid(t, k), "persona": persona, "task": "math",
                             "mode": "zero_shot" if n % 3 == 0 else "persona_enhanced",
                             "constraints": {"topic": "", "level": "grade school", "sub_questions": 0},
                             "model": "m-big", "usage": {"prompt_tokens": 100, "completion_tokens": 50,
                                                         "total_tokens": 150},
                             "problem": problem, "solutions": ["a", "b", "c"], "answers": ["1", "1", "2"],
                             "votes": [{"answer": "1", "count": 2}], "answer": "1" if n % 4 else None,
                             "verified": bool(n % 4), "solver_model": "m-big"})
                instr.append({"id": f"i{t}{k}", "persona_id": pid(t, k), "persona": persona, "task": "instruction",
                              "mode": "few_shot", "constraints": {}, "model": "m-small",
                              "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
                              "kind": "instruction", "instruction": question,
                              "messages": [{"role": "user", "content": question}]})
                n += 1
        instr.append({"id": "dlg", "persona_id": pid(0, 0), "persona": TOPICS["baking"][0][0], "task": "instruction",
                      "mode": "zero_shot", "constraints": {}, "model": "m-small",
                      "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
                      "kind": "dialogue", "instruction": "Shall we talk about telescopes?",
                      "messages": [{"role": "persona", "content": "Shall we talk about telescopes?"}],
                      "partner_id": pid(1, 0), "partner": TOPICS["astronomy"][0][0]})
        write(outdir / "math.jsonl.zst", math)
        write(outdir / "instruction.jsonl.zst", instr)
    if checkpoint:
        Checkpointer(outdir).save(State(fingerprint="test", finished=True, counters=dict(COUNTERS), created_at=1.0))
    return outdir


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    return build(tmp_path / "out")


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    from engine.dedup.embedder import Embedder

    return Embedder(threads=2)
