"""The in-stream gate: stage order, keep-first, intra-window duplicates, durability."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from engine.config import Exact, GateCfg, MinHash, Quality, Semantic
from engine.dedup.exact import ExactIndex, normalise, text_hash
from engine.dedup.gate import DedupGate
from engine.ids import content_id
from engine.stages.base import Candidate


def cand(text: str, i: int = 0) -> Candidate:
    return Candidate(id=content_id("p", text, i), persona=text, source_id=f"s{i}", root_id=None)


def gate(semantic: bool = True, **kw: object) -> DedupGate:
    return DedupGate(GateCfg(semantic=Semantic(enabled=semantic), **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sem_gate_cfg() -> GateCfg:
    return GateCfg()


def test_quality_rejects_carry_reason_codes() -> None:
    g = gate(semantic=False)
    texts = ["nurse", "I'm sorry, but I cannot help with that request about a teacher.",
             "<one-sentence description of the reader>", '{"persona": "a baker who bakes"}',
             "Bobby Blair Johnson", "a baker baker baker who likes bread",
             "A marine biologist who studies coral bleaching."]
    d = g.decide([cand(t, i) for i, t in enumerate(texts)], None)
    assert [(x.stage, x.reason) for x in d[:6]] == [
        ("quality", "too_short"), ("quality", "refusal"), ("quality", "placeholder"), ("quality", "markup"),
        ("quality", "not_a_person"), ("quality", "repetition")]
    assert d[6].accepted


def test_exact_normalisation_catches_case_and_punctuation_variants() -> None:
    assert normalise("A  Nurse -- who WORKS nights!") == normalise("a nurse who works nights")
    g = gate(semantic=False, minhash=MinHash(enabled=False))
    first = cand("A pediatric nurse who works night shifts in a busy hospital.", 0)
    dup = cand("a Pediatric nurse, who works night-shifts in a busy hospital", 1)
    d = g.decide([first, dup], None)
    assert d[0].accepted and not d[1].accepted
    assert (d[1].stage, d[1].duplicate_of, d[1].score) == ("exact", first.id, 1.0)


def test_tiny_bloom_filter_never_drops_a_unique_item() -> None:
    # a filter sized for 10 items at 50% false positives: most lookups are false positives
    idx = ExactIndex(expected_items=10, false_positive_rate=0.5)
    texts = [f"a teacher of subject number {i} in district {i * 7}" for i in range(3000)]
    for t in texts:
        h = text_hash(t)
        assert idx.query(h) is None
        idx.add(h)
    assert idx.false_positives > 100  # the filter did lie; confirmation caught every lie
    assert all(idx.query(text_hash(t)) == i for i, t in enumerate(texts[:50]))


def test_minhash_stage_names_the_kept_persona() -> None:
    g = gate(semantic=False, exact=Exact(enabled=False))
    base = "a retired railway engineer who restores steam locomotives and writes about signalling history in wales"
    near = base + " today"  # word-set Jaccard 17/18 = 0.944
    d = g.decide([cand(base, 0), cand(near, 1)], None)
    assert d[0].accepted and (d[1].stage, d[1].duplicate_of) == ("minhash", g.id_at(0))
    assert d[1].score >= 0.9


def test_semantic_catches_paraphrases_within_one_window_keep_first() -> None:
    g = gate(semantic=True, minhash=MinHash(enabled=False))
    texts = [
        "A high school chemistry teacher who designs safe lab experiments for teenagers.",
        "A pastry chef who specialises in French laminated doughs.",
        "A high-school chemistry teacher who plans safe laboratory experiments for teens.",
        "A pastry chef specialising in laminated French doughs such as croissants.",
        "An amateur astronomer who photographs galaxies from a backyard observatory.",
    ]
    d = g.decide([cand(t, i) for i, t in enumerate(texts)], None)
    assert [x.accepted for x in d] == [True, True, False, False, True]
    assert d[2].stage == "semantic" and d[2].duplicate_of == g.id_at(0) and d[2].score >= 0.9
    assert d[3].duplicate_of == g.id_at(1)


def test_keep_first_is_arrival_order_even_with_length_sorted_batches() -> None:
    # the longer text arrives first; batches are built by length, verdicts must still keep it
    g = DedupGate(GateCfg(minhash=MinHash(enabled=False), semantic=Semantic(batch_size=2)))
    long = "A volunteer firefighter in a rural county who also trains new recruits in wildfire safety every summer."
    short = "A volunteer firefighter in a rural county who trains new recruits in wildfire safety."  # cos 0.98
    fillers = ["A stamp collector who trades rare items at weekend fairs.", "A jazz drummer touring small clubs.",
               "A hospice nurse who supports families through the last weeks of care."]
    d = g.decide([cand(long, 0), *[cand(f, i + 1) for i, f in enumerate(fillers)], cand(short, 9)], None)
    assert d[0].accepted and not d[-1].accepted and d[-1].duplicate_of == g.id_at(0)


def test_every_index_round_trips_through_a_snapshot(tmp_path: Path) -> None:
    g = gate(semantic=True)
    rng = random.Random(3)
    jobs = ["nurse", "farmer", "welder", "pilot", "chemist", "librarian", "baker", "geologist"]
    texts = [f"A {rng.choice(jobs)} from town {i} who studies topic {i * 13} on weekends." for i in range(40)]
    g.decide([cand(t, i) for i, t in enumerate(texts)], None)
    kept = len(g)
    g.save(tmp_path)
    g2 = gate(semantic=True)
    g2.load(tmp_path)
    assert len(g2) == kept and g2.id_at(kept - 1) == g.id_at(kept - 1)
    probes = [cand(t, 100 + i) for i, t in enumerate(texts)]  # all seen before
    again = g2.decide(probes, None)
    assert not any(x.accepted for x in again)
    assert {x.stage for x in again} <= {"exact", "minhash", "semantic", "quality"}
    fresh = g2.decide([cand("A marine archaeologist who maps shipwrecks along the Baltic coast.", 999)], None)
    assert fresh[0].accepted


def test_corrupt_snapshot_is_refused(tmp_path: Path) -> None:
    g = gate(semantic=False)
    g.decide([cand(f"A potter number {i} who glazes bowls with ash from orchard {i}.", i) for i in range(5)], None)
    g.save(tmp_path)
    import numpy as np

    np.save(tmp_path / "ids.npy", np.zeros((3, 16), dtype=np.uint8))  # disagrees with the indexes
    with pytest.raises(Exception, match="holds"):
        gate(semantic=False).load(tmp_path)


def test_gate_config_validation_names_keys() -> None:
    from engine import config
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="gate.minhash.bands"):
        config.load(None, ["gate.minhash.bands=20", "gate.minhash.rows=20"])
    with pytest.raises(ConfigError, match="gate.quality.max_words"):
        config.load(None, ["gate.quality.max_words=2", "gate.quality.min_words=5"])
    with pytest.raises(ConfigError, match="gate.semantic.dtype"):
        config.load(None, ["gate.semantic.dtype='f8'"])
    assert msgspec.to_builtins(Quality())["min_words"] == 3
