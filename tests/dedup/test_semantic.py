"""The semantic index: verdicts, keep-first windows, persistence, and the import-order hazard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.dedup.embedder import Embedder
from engine.dedup.semantic import Match, SemanticIndex

DIM = 32


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def near(vec: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly ``cosine`` to unit ``vec``."""
    noise = rng.standard_normal(vec.shape).astype(np.float32)
    noise -= (noise @ vec) * vec
    noise /= np.linalg.norm(noise)
    return unit(cosine * vec + np.sqrt(1 - cosine**2) * noise)


def test_import_order_in_a_fresh_interpreter() -> None:
    # usearch 2.26.x segfaults when imported before onnxruntime; the engine's own order must work.
    code = (
        "import engine.dedup.semantic\n"
        "import engine.dedup.embedder\n"
        "import sys\n"
        "mods = list(sys.modules)\n"
        "assert mods.index('onnxruntime') < mods.index('usearch'), 'usearch came first'\n"
        "from engine.dedup.embedder import Embedder\n"
        "from engine.dedup.semantic import SemanticIndex\n"
        "e = Embedder(threads=1)\n"
        "v = e.embed(['a nurse', 'a pilot'])\n"
        "ix = SemanticIndex(e.dim)\n"
        "ix.add(v[0])\n"
        "assert ix.query(v[0]) is not None and ix.query(v[1]) is None\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.strip() == "ok"


def test_query_add_and_threshold() -> None:
    rng = np.random.default_rng(0)
    index = SemanticIndex(DIM, threshold=0.9)
    base = unit(rng.standard_normal((50, DIM)))
    assert [index.add(v) for v in base] == list(range(50))
    assert len(index) == 50
    hit = index.query(base[7])
    assert isinstance(hit, Match) and hit.position == 7 and hit.similarity > 0.999
    assert index.query(near(base[3], 0.95, rng)) == (3, pytest.approx(0.95, abs=2e-3))
    assert index.query(near(base[3], 0.85, rng)) is None
    assert index.statistics()["added"] == 50
    with pytest.raises(ValueError, match="dim"):
        index.add(np.ones(DIM + 1))


def test_empty_index_finds_nothing() -> None:
    index = SemanticIndex(DIM)
    assert index.query(np.ones(DIM)) is None
    assert index.search(np.ones((3, DIM))) == [None, None, None]


def test_window_catches_intra_window_duplicates_in_arrival_order() -> None:
    rng = np.random.default_rng(1)
    index = SemanticIndex(DIM, threshold=0.9)
    old = unit(rng.standard_normal(DIM))
    index.add(old)
    a, b = unit(rng.standard_normal((2, DIM)))
    vecs = np.stack([a, near(a, 0.95, rng), b, near(old, 0.93, rng), near(a, 0.97, rng), b])
    window = index.window(vecs)
    decisions = []
    for i in range(len(window)):
        match = window.check(i)
        decisions.append(match.position if match else window.accept(i))
    # a kept at 1; its variants point at it; b kept at 2; the old item's variant at 0.
    assert decisions == [1, 1, 2, 0, 1, 2]
    assert len(index) == 3
    with pytest.raises(ValueError):
        window.accept(0)


def test_window_member_rejected_elsewhere_does_not_block_later_ones() -> None:
    rng = np.random.default_rng(2)
    index = SemanticIndex(DIM)
    a = unit(rng.standard_normal(DIM))
    window = index.window(np.stack([a, near(a, 0.95, rng)]))
    # The gate drops member 0 for another reason (quality, MinHash): member 1 is then kept.
    assert window.check(1) is None
    assert window.accept(1) == 0


def test_keep_first_with_real_embeddings_and_sorted_batches() -> None:
    texts = [
        "A marine biologist researching the bleaching of coral reefs along the Great Barrier Reef.",
        "A jazz pianist.",
        "A marine biologist researching the bleaching of coral reefs on the Great Barrier Reef.",
        "A jazz pianist!",
        "A tax accountant who advises small restaurants on payroll.",
    ]
    embedder = Embedder(batch_size=2)  # the longer first item lands in a later batch
    index = SemanticIndex(embedder.dim, threshold=0.9)
    window = index.window(embedder.embed(texts))
    kept = [i for i in range(len(texts)) if window.check(i) is None and window.accept(i) >= 0]
    assert kept == [0, 1, 4]


def test_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = SemanticIndex(DIM, threshold=0.8, dtype="f32", connectivity=8, expansion_search=32)
    vecs = unit(rng.standard_normal((300, DIM)))
    for v in vecs:
        index.add(v)
    probes = np.stack([near(v, 0.9, rng) for v in vecs[:50]])
    before = index.search(probes)
    index.save(tmp_path / "semantic")
    loaded = SemanticIndex.load(tmp_path / "semantic")
    assert len(loaded) == 300
    assert (loaded.dtype, loaded.threshold, loaded.connectivity) == ("f32", 0.8, 8)
    assert loaded.expansion_search == 32
    assert loaded.search(probes) == before
    assert loaded.add(vecs[0] * -1) == 300
    assert not list((tmp_path / "semantic").glob("*.tmp"))


def test_planted_near_duplicates_are_all_found_at_f16() -> None:
    rng = np.random.default_rng(4)
    base = unit(rng.standard_normal((3000, 64)))
    index = SemanticIndex(64, threshold=0.9)
    for v in base:
        index.add(v)
    probes = np.stack([near(v, 0.92, rng) for v in base[:500]])
    found = index.search(probes)
    assert all(m is not None and m.position == i for i, m in enumerate(found))
