"""The diversity check with the real embedder: similar personas, similar outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.report.diversity import diversity, output_text, stratified_pairs

from .conftest import TOPICS


def test_bins_ordered_and_populated(outdir: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    d = diversity(outdir, embedder, pairs=500, bins=5, seed=0)
    assert d["status"] == "ok" and set(d["tasks"]) == {"math", "instruction"}
    m = d["tasks"]["math"]
    bins = m["bins"]
    assert [(b["lo"], b["hi"]) for b in bins] == [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)]
    assert m["personas"] == 12 and m["pairs"] == 66 == sum(b["pairs"] for b in bins)  # all 12*11/2 pairs fit
    for b in bins:
        assert b["pairs"] == b["available"]
        if b["pairs"]:
            assert b["lo"] <= b["persona_sim"] < b["hi"] or (b["lo"] == 0.0 and b["persona_sim"] < b["hi"])
    low = [b for b in bins if b["hi"] <= 0.4 and b["pairs"]]
    high = [b for b in bins if b["lo"] >= 0.4 and b["pairs"]]
    assert low and high and len(low) + len(high) >= 3

    def mean(bs: list[dict]) -> float:
        return sum(b["output_sim"] * b["pairs"] for b in bs) / sum(b["pairs"] for b in bs)

    # same-topic personas (high persona cosine) wrote same-topic problems
    assert mean(high) > mean(low) + 0.15
    assert m["pearson"] > 0.5
    # instruction: identical questions within a topic; the dialogue record is not used
    assert d["tasks"]["instruction"]["personas"] == 12 and d["tasks"]["instruction"]["pearson"] > 0.5
    # seeded: the same report twice
    assert diversity(outdir, embedder, pairs=500, bins=5, seed=0)["tasks"] == d["tasks"]


def test_two_bins_increase(outdir: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    d = diversity(outdir, embedder, pairs=40, bins=2, seed=3)
    m = d["tasks"]["math"]
    assert m["pairs"] == 40
    lo, hi = m["bins"]
    assert lo["pairs"] == 40 - hi["pairs"] and hi["pairs"] == hi["available"]  # the rare similar pairs all taken
    assert hi["output_sim"] > lo["output_sim"] and m["increasing"] is True


def test_stratified_pairs_spread_the_budget() -> None:
    sims = np.array([0.05] * 100 + [0.5] * 3 + [0.95] * 50)
    rng = np.random.default_rng(0)
    chosen, avail = stratified_pairs(sims, np.linspace(0, 1, 3), 40, rng)
    assert list(avail) == [100, 53]
    assert len(chosen) == 40 and len(set(chosen.tolist())) == 40
    assert (sims[chosen] < 0.5).sum() == 20
    chosen, _ = stratified_pairs(np.array([-0.3, 1.0]), np.linspace(0, 1, 6), 10, rng)
    assert sorted(chosen.tolist()) == [0, 1]  # negative cosines go to the first bin, 1.0 to the last


def test_output_text_is_lenient() -> None:
    assert output_text("math", {"problem": " 2+2? "}) == "2+2?"
    assert output_text("knowledge", {"question": "Why?", "answer": "Because."}) == "Why?\nBecause."
    assert output_text("npc", {"name": "Ada", "background": "A smith.", "role": "x"}) == "Ada\nA smith."
    assert output_text("instruction", {"messages": [{"role": "user", "content": "Hi"}]}) == "Hi"
    assert output_text("tool", {"interface": {"description": "Adds."}}) == "Adds."
    assert output_text("logic", {"id": "1", "persona": "p", "riddle": "What?"}) == '{"riddle": "What?"}'


def test_skipped_without_outputs(tmp_path: Path) -> None:
    assert diversity(tmp_path, None)["status"] == "skipped"  # no embedder is even loaded
    assert len(TOPICS) == 4
