"""MinHash stage: the Cython kernel agrees with its pure-Python twin, and both are right."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dedup import _minhash_ref as ref
from engine.dedup.minhash import IMPLEMENTATION

try:
    from engine.dedup import _minhash as kernel
except ImportError:  # pragma: no cover - the build must produce it here
    kernel = None

needs_kernel = pytest.mark.skipif(
    kernel is None, reason="Cython extension engine.dedup._minhash is not built "
    "(pip install -e . with Cython, and PERSONA_NO_EXT unset)")

IMPLS: list[Any] = [pytest.param(ref, id="python"),
                    pytest.param(kernel, id="cython", marks=needs_kernel)]

# Text with the cases that trip tokenisers: NFKC folds (ligatures, full-width,
# superscripts), casefold specials (ß, final sigma, dotted I), combining marks,
# underscores, digits, CJK, astral letters and emoji, punctuation and odd spaces.
ALPHABET = st.sampled_from(list(
    "abcxyzABCXYZ0129_ -.,;'\"\t\n\u00a0\u2003éÉßẞΣσςİıﬁﬃ½²ⅣＡＢｃ１\u0301\u0308"
    "日本語한국어ÅΩµ𝔘𝔫𝟙😀👍🏽٣ߊ\u200b\u2028"))
TEXT = st.text(ALPHABET, max_size=80)
WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa",
         "Straße", "café", "naïve", "ﬁne", "日本"]


def _near_stream(draw: st.DrawFn) -> list[str]:
    """A stream with repeats and near-repeats over a small vocabulary."""
    bases = draw(st.lists(st.lists(st.sampled_from(WORDS), max_size=12), min_size=1,
                          max_size=6))
    out = []
    for _ in range(draw(st.integers(1, 25))):
        words = list(draw(st.sampled_from(bases)))
        for _ in range(draw(st.integers(0, 2))):
            words.append(draw(st.sampled_from(WORDS)))
        if words and draw(st.booleans()):
            words.pop(draw(st.integers(0, len(words) - 1)))
        out.append(draw(st.sampled_from([" ", ", ", "  "])).join(words))
    return out


near_stream = st.composite(_near_stream)


def _set_jaccard(a: set[int], b: set[int]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


# ---- kernel == reference ------------------------------------------------------------

@needs_kernel
@settings(max_examples=300, deadline=None)
@given(text=TEXT, ngram=st.integers(1, 3))
def test_prepare_agrees_bit_for_bit(text: str, ngram: int) -> None:
    k = kernel.MinHashIndex(num_perm=32, ngram=ngram, bands=8, rows=4, seed=7)
    r = ref.MinHashIndex(num_perm=32, ngram=ngram, bands=8, rows=4, seed=7)
    pk, pr = k.prepare(text), r.prepare(text)
    assert pk.hashes == pr.hashes
    assert pk.signature == pr.signature
    assert pk.band_keys == pr.band_keys
    # and the reference's hashes are those of its regex tokens
    assert pr.hashes == tuple(sorted({ref.hash_token(g.encode()) for g in ref.grams(text, ngram)}))


@needs_kernel
def test_word_characters_agree_over_all_of_unicode() -> None:
    # every code point, after the same normalisation: the kernel's \w test must be re's
    text = " ".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    k = kernel.MinHashIndex(num_perm=1, bands=1, rows=1)
    assert k.prepare(text).hashes == tuple(ref.token_hashes(ref.encode_tokens(text)))


@needs_kernel
def test_long_texts_and_repeated_tokens_agree() -> None:
    rng = random.Random(3)
    k = kernel.MinHashIndex(num_perm=64, bands=16, rows=4)
    r = ref.MinHashIndex(num_perm=64, bands=16, rows=4)
    for n in (1, 15, 16, 17, 63, 64, 65, 200, 1000):  # sort and signature block edges
        text = " ".join(rng.choice(WORDS + [f"w{i}" for i in range(n)]) for _ in range(n))
        pk, pr = k.prepare(text), r.prepare(text)
        assert (pk.hashes, pk.signature, pk.band_keys) == (pr.hashes, pr.signature,
                                                           pr.band_keys)


@needs_kernel
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=near_stream(), threshold=st.sampled_from([0.5, 0.8, 0.9]),
       config=st.sampled_from([(32, 8, 4), (16, 16, 1), (24, 3, 8)]))
def test_stream_decisions_agree(stream: list[str], threshold: float,
                                config: tuple[int, int, int]) -> None:
    num_perm, bands, rows = config
    k = kernel.MinHashIndex(threshold, num_perm, bands=bands, rows=rows)
    r = ref.MinHashIndex(threshold, num_perm, bands=bands, rows=rows)
    batch = k.prepare_many(stream)
    for text, pk in zip(stream, batch, strict=True):
        pr = r.prepare(text)
        qk, qr = k.query(pk), r.query(pr)
        assert qk == qr
        if qk is None:
            assert k.add(pk) == r.add(pr)
    sk, sr = k.stats(), r.stats()
    for key in ("items", "buckets", "arena_tokens", "queries", "candidates",
                "candidates_checked", "duplicates"):
        assert sk[key] == sr[key], key


# ---- exact verification -------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=150, deadline=None)
@given(a=st.lists(st.sampled_from(WORDS), max_size=14),
       b=st.lists(st.sampled_from(WORDS), max_size=14))
def test_exact_jaccard_is_set_jaccard(impl: Any, a: list[str], b: list[str]) -> None:
    index = impl.MinHashIndex(threshold=0.01, num_perm=16, bands=16, rows=1)
    pa, pb = index.prepare(" ".join(a)), index.prepare(" ".join(b))
    expected = _set_jaccard(set(pa.hashes), set(pb.hashes))
    assert impl.jaccard(pa, pb) == expected
    # the word-set Jaccard, since 64-bit hashes of a dozen words do not collide
    assert expected == _set_jaccard({w.casefold() for w in a}, {w.casefold() for w in b})
    index.add(pa)
    hit = index.query(pb)
    if hit is not None:  # the query path computes J with the same merge
        assert hit == (0, expected)


def _pair(shared: int, a_only: int, b_only: int) -> tuple[str, str]:
    common = [f"word{i}" for i in range(shared)]
    return (" ".join(common + [f"a{i}" for i in range(a_only)]),
            " ".join(common + [f"b{i}" for i in range(b_only)]))


def _share_a_band(a: Any, b: Any) -> bool:
    return any(x == y for x, y in zip(a.band_keys, b.band_keys, strict=True))


@pytest.mark.parametrize("impl", IMPLS)
def test_candidate_below_threshold_never_rejects(impl: Any) -> None:
    a, b = _pair(179, 10, 10)  # J = 179 / 199 = 0.8995, equal sizes: merged, not filtered
    index = impl.MinHashIndex(threshold=0.9)
    pa, pb = index.prepare(a), index.prepare(b)
    assert _share_a_band(pa, pb), "the pair must be an LSH candidate"
    index.add(pa)
    assert index.query(pb) is None
    assert index.stats()["candidates_checked"] == 1  # it was a candidate, and verified


@pytest.mark.parametrize("impl", IMPLS)
def test_candidate_at_threshold_rejects(impl: Any) -> None:
    a, b = _pair(180, 10, 10)  # J = 180 / 200 = 0.9 exactly: on the duplicate side
    index = impl.MinHashIndex(threshold=0.9)
    index.add(index.prepare(a))
    assert index.query(index.prepare(b)) == (0, 0.9)


@pytest.mark.parametrize("impl", IMPLS)
def test_length_filter_skips_lopsided_candidates(impl: Any) -> None:
    a, b = _pair(80, 0, 9)  # J = 80 / 89 < 0.9, and |a| / |b| says so without a merge
    index = impl.MinHashIndex(threshold=0.9)
    pa, pb = index.prepare(a), index.prepare(b)
    assert _share_a_band(pa, pb), "the pair must be an LSH candidate"
    index.add(pa)
    assert index.query(pb) is None
    stats = index.stats()
    assert stats["candidates"] >= 1 and stats["candidates_checked"] == 0
    c, d = _pair(90, 0, 10)  # J = 0.9 = |c| / |d|: the filter must let it through
    index.add(index.prepare(c))
    assert index.query(index.prepare(d)) == (1, 0.9)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_texts(impl: Any) -> None:
    index = impl.MinHashIndex()
    empty, blank, word = index.prepare(""), index.prepare(" ,;\n"), index.prepare("word")
    assert empty.hashes == blank.hashes == ()
    assert index.query(empty) is None
    assert index.add(word) == 0
    assert index.query(empty) is None  # never a duplicate of a non-empty text
    assert index.add(empty) == 1
    assert index.query(blank) == (1, 1.0)  # J(empty, empty) = 1
    assert index.query(index.prepare("other")) is None


@pytest.mark.parametrize("impl", IMPLS)
def test_item_from_another_configuration_is_refused(impl: Any) -> None:
    a, b = impl.MinHashIndex(seed=1), impl.MinHashIndex(seed=2)
    with pytest.raises(ValueError, match="other parameters"):
        a.query(b.prepare("some text"))
    with pytest.raises(ValueError, match="other parameters"):
        a.add(b.prepare("some text"))


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_parameters(impl: Any) -> None:
    for kwargs in [{"threshold": 1.5}, {"num_perm": 0}, {"ngram": 0}, {"seed": -1},
                   {"bands": 20, "rows": 7}]:
        with pytest.raises(ValueError):
            impl.MinHashIndex(**kwargs)


# ---- planted duplicates, keep-first ---------------------------------------------------

def _corpus(n: int, seed: int) -> tuple[list[str], dict[int, tuple[int, float]]]:
    """Distinct random texts plus planted copies with known word-set Jaccard to a source."""
    rng = random.Random(seed)
    vocab = [f"v{i}" for i in range(5000)]
    texts: list[str] = []
    planted: dict[int, tuple[int, float]] = {}
    for i in range(n):
        if i > 10 and rng.random() < 0.3:
            src = rng.randrange(i)
            while src in planted:
                src = rng.randrange(i)
            words = texts[src].split()
            extra = rng.choice([0, 1, 2, 3, 5])  # J = m/(m+extra): 1.0 down to ~0.83
            new = words + [f"new{i}_{j}" for j in range(extra)]
            rng.shuffle(new)
            texts.append(" ".join(new).upper() if extra == 0 else " ".join(new))
            planted[i] = (src, len(words) / (len(words) + extra))
        else:
            texts.append(" ".join(rng.sample(vocab, rng.randint(15, 45))))
    return texts, planted


def _oracle(texts: list[str], threshold: float) -> list[tuple[int, float] | None]:
    """Exact keep-first by brute force: the earliest kept text with J >= threshold."""
    sets = [frozenset(t.casefold().split()) for t in texts]
    kept: list[int] = []
    out: list[tuple[int, float] | None] = []
    for i, s in enumerate(sets):
        hit = None
        for k in kept:
            j = len(s & sets[k]) / len(s | sets[k])
            if j >= threshold:
                hit = (k, j)
                break
        out.append(hit)
        if hit is None:
            kept.append(i)
    return out


@pytest.mark.parametrize("impl", IMPLS)
def test_planted_duplicates_are_caught_and_distinct_items_kept(impl: Any) -> None:
    texts, planted = _corpus(1500 if impl is kernel else 400, seed=11)
    index = impl.MinHashIndex(threshold=0.9)
    stream_of: list[int] = []  # index position -> stream position
    decisions: list[tuple[int, float] | None] = []
    for i, item in enumerate(index.prepare_many(texts)):
        hit = index.query(item)
        decisions.append(None if hit is None else (stream_of[hit[0]], hit[1]))
        if hit is None:
            assert index.add(item) == len(stream_of)
            stream_of.append(i)
    truth = _oracle(texts, 0.9)
    assert decisions == truth
    caught = [i for i, (_, j) in planted.items() if j >= 0.9]
    kept = [i for i, (_, j) in planted.items() if j < 0.9]
    assert caught and kept
    assert all(decisions[i] is not None for i in caught)
    assert all(decisions[i] is None for i in range(len(texts)) if i not in planted)


@pytest.mark.parametrize("impl", IMPLS)
def test_keep_first_chains(impl: Any) -> None:
    base = [f"w{i}" for i in range(40)]
    a = " ".join(base)
    b = " ".join(base[:38] + ["x1", "x2"])        # J(a, b) = 38/42 = 0.905
    c = " ".join(base[:36] + ["x1", "x2", "x3", "x4"])  # J(b, c) = 0.905, J(a, c) = 0.82
    index = impl.MinHashIndex(threshold=0.9)
    pa, pb, pc = (index.prepare(t) for t in (a, b, c))
    assert index.add(pa) == 0
    assert index.query(pb) == (0, 38 / 42)
    assert index.query(pc) is None  # b was not kept, so c is new
    assert index.add(pc) == 1
    assert index.query(index.prepare(a.upper())) == (0, 1.0)  # the earliest kept match
    assert index.query(index.prepare(c)) == (1, 1.0)


# ---- persistence --------------------------------------------------------------------

def _run(index: Any, texts: list[str]) -> list[tuple[int, float] | None]:
    out = []
    for item in index.prepare_many(texts):
        hit = index.query(item)
        if hit is None:
            index.add(item)
        out.append(hit)
    return out


def _impl_pairs() -> list[Any]:
    pairs = [pytest.param(ref, ref, id="python->python")]
    for a, b, name in [(kernel, kernel, "cython->cython"), (kernel, ref, "cython->python"),
                       (ref, kernel, "python->cython")]:
        pairs.append(pytest.param(a, b, id=name, marks=needs_kernel))
    return pairs


@pytest.mark.parametrize(("writer", "reader"), _impl_pairs())
def test_save_load_round_trip(writer: Any, reader: Any, tmp_path: Path) -> None:
    texts, _ = _corpus(300, seed=5)
    whole = _run(writer.MinHashIndex(threshold=0.9, seed=3), texts)
    first = writer.MinHashIndex(threshold=0.9, seed=3)
    head = _run(first, texts[:150])
    first.save(tmp_path / "idx")
    loaded = reader.MinHashIndex.load(tmp_path / "idx", threshold=0.9, seed=3)
    assert (loaded.bands, loaded.rows, len(loaded)) == (first.bands, first.rows, len(first))
    assert head + _run(loaded, texts[150:]) == whole


def _saved(tmp_path: Path) -> Path:
    impl = kernel if kernel is not None else ref
    index = impl.MinHashIndex()
    _run(index, _corpus(50, seed=1)[0])
    index.save(tmp_path / "idx")
    return tmp_path / "idx"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("damage", ["flip_arena", "truncate_offsets", "version", "header",
                                    "shape", "missing"])
def test_corrupt_files_raise_value_error(impl: Any, damage: str, tmp_path: Path) -> None:
    d = _saved(tmp_path)
    if damage == "flip_arena":
        raw = bytearray((d / "arena.npy").read_bytes())
        raw[-3] ^= 0x40
        (d / "arena.npy").write_bytes(bytes(raw))
    elif damage == "truncate_offsets":
        raw = (d / "offsets.npy").read_bytes()
        (d / "offsets.npy").write_bytes(raw[:-8])
    elif damage == "version":
        text = (d / "header.json").read_text().replace('"version": 1', '"version": 99')
        (d / "header.json").write_text(text)
    elif damage == "header":
        (d / "header.json").write_text("{not json")
    elif damage == "shape":
        np.save(d / "band_keys.npy", np.zeros((3, 2), dtype=np.uint32))
    else:
        (d / "band_keys.npy").unlink()
    with pytest.raises(ValueError, match="corrupt or mismatched"):
        impl.MinHashIndex.load(d)


@pytest.mark.parametrize("impl", IMPLS)
def test_load_checks_expected_parameters(impl: Any, tmp_path: Path) -> None:
    d = _saved(tmp_path)
    impl.MinHashIndex.load(d, threshold=0.9, num_perm=128)
    with pytest.raises(ValueError, match="seed is 1, expected 2"):
        impl.MinHashIndex.load(d, seed=2)
    with pytest.raises(TypeError, match="unknown index parameters"):
        impl.MinHashIndex.load(d, colour="red")
    with pytest.raises(FileNotFoundError):
        impl.MinHashIndex.load(tmp_path / "nowhere")


# ---- dispatch and threads -----------------------------------------------------------

def _implementation_in_subprocess(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PERSONA_PURE_PYTHON"}
    if env_value is not None:
        env["PERSONA_PURE_PYTHON"] = env_value
    code = ("from engine.dedup.minhash import IMPLEMENTATION, MinHashIndex; "
            "print(IMPLEMENTATION, MinHashIndex.__module__)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def test_env_switch_selects_the_reference() -> None:
    assert _implementation_in_subprocess("1") == "python engine.dedup._minhash_ref"


@needs_kernel
def test_kernel_is_the_default() -> None:
    assert _implementation_in_subprocess(None) == "cython engine.dedup._minhash"
    assert _implementation_in_subprocess("0") == "cython engine.dedup._minhash"
    assert IMPLEMENTATION == ("python" if os.environ.get("PERSONA_PURE_PYTHON") == "1"
                              else "cython")


@needs_kernel
def test_prepare_many_from_threads_matches_serial() -> None:
    index = kernel.MinHashIndex()
    texts, _ = _corpus(400, seed=2)
    serial = [p.signature for p in index.prepare_many(texts)]
    results: dict[int, list[tuple[int, ...]]] = {}

    def work(i: int) -> None:
        results[i] = [p.signature for p in index.prepare_many(texts)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == serial for r in results.values())
