"""The build recipes: fp32 reference, the faithful int8 CPU model, and fp16 for CUDA.

The CPU recipe was chosen with bench/embed.py (see its table and --candidates):
SmoothQuant moves activation outliers into the weights, GPTQ picks the int8 weights,
and every linear runs on onnxruntime's u8s8 int8 kernel. Activations use static
per-tensor scales calibrated on persona texts, except the inputs of the second FFN
linear, which get one scale per token row found at run time; both keep an item's
embedding independent of its batch-mates. Every build is checked against fp32 on
held-out persona texts; one that is not faithful is replaced by fp32, with the reason
recorded.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from engine.dedup.onnx_build.calibrate import InputStats, calibrate, linear_names
from engine.dedup.onnx_build.corpus import persona_texts
from engine.dedup.onnx_build.fidelity import Fidelity, compare
from engine.dedup.onnx_build.gptq import gptq, round_to_nearest, with_residual
from engine.dedup.onnx_build.graph import OPSET, build_graph
from engine.dedup.onnx_build.linears import OPSET_BLOCKED, blocked_quantize_supported
from engine.dedup.onnx_build.plan import DEFAULT_PLAN, KEEP_FP32, Int8Plan
from engine.dedup.onnx_build.smooth import smooth
from engine.dedup.onnx_build.weights import BertConfig, Int8Linear, layer_linears

__all__ = [
    "CPU_RECIPE",
    "DEFAULT_PLAN",
    "KEEP_FP32",
    "Int8Plan",
    "build_cpu",
    "build_cuda_fp16",
    "build_fp32",
    "cpu_recipe",
    "embed_model",
]

log = logging.getLogger(__name__)

Weights = dict[str, np.ndarray]

#: Bump when a recipe changes: cached files built by another recipe are rebuilt.
FP32_RECIPE = "fp32-v1"
CPU_RECIPE = "int8-sq85-ffn2rows75-gptq-res3-qkv3-v2"
CUDA_RECIPE = "fp16-fused-v1"

CALIBRATION_TEXTS = 512
GUARD_TEXTS = 800
#: Hand-written persona texts checked at every build besides the generated ones.
DEMO_TEXTS = (
    "A retired nurse who volunteers at a local hospice.",
    "A former nurse, now retired, who volunteers at a hospice in her town.",
    "A high school chemistry teacher who coaches the robotics team.",
    "A compiler engineer who writes code generators for GPUs.",
    "An organic vegetable farmer based in Vermont.",
    "A medieval historian who writes about monastic life.",
    "A jazz pianist teaching teenagers how to improvise.",
    "The owner of a small family-run bakery.",
)


def build_fp32(weights: Weights, cfg: BertConfig) -> onnx.ModelProto:
    """The plain fp32 graph (the reference every other variant is measured against)."""
    return build_graph(weights, cfg)


def _int8_linear(name: str, weight: np.ndarray, stats: InputStats, plan: Int8Plan) -> Int8Linear:
    residual = None
    if plan.residual(name):
        q, scale, residual = with_residual(weight)
    else:
        q, scale = gptq(weight, stats.gram) if plan.use_gptq else round_to_nearest(weight)
    if plan.rows(name):
        return Int8Linear(q, scale, per_row=True, residual=residual)
    if not plan.static:
        return Int8Linear(q, scale, residual=residual)
    # uint8 over the calibrated range, widened to include 0 (exactly representable).
    low, high = min(float(stats.low.min()), 0.0), max(float(stats.high.max()), 0.0)
    act_scale = max(high - low, 1e-8) / 255.0
    zero = int(round(-low / act_scale))
    return Int8Linear(q, scale, act_scale, zero, plan.two_passes(name), residual=residual)


def plan_opset(plan: Int8Plan) -> int:
    """Opset 21 when per-row linears can use it (one QuantizeLinear per row), else 17."""
    return OPSET_BLOCKED if plan.per_row and blocked_quantize_supported() else OPSET


def cpu_recipe() -> str:
    """The CPU recipe's cache name; it says which QuantizeLinear form this onnxruntime gets."""
    return f"{CPU_RECIPE}-opset{plan_opset(DEFAULT_PLAN)}"


def quantise(weights: Weights, cfg: BertConfig, stats: dict[str, InputStats], plan: Int8Plan) -> onnx.ModelProto:
    """The int8 graph for ``plan`` from fp32 ``weights`` and calibration ``stats``."""
    names = [n for n in linear_names(cfg.layers) if plan.quantised(n)]
    groups = {n.split(".")[1] for n in names}
    alpha = {g: a for g, a in plan.alpha.items() if g in groups}
    smoothed, prescale, stats = smooth(weights, stats, cfg.layers, alpha, only=set(names))
    int8 = {}
    for i in range(cfg.layers):
        for name, (weight, _bias) in layer_linears(smoothed, i).items():
            if name in names:
                int8[name] = _int8_linear(name, weight, stats[name], plan)
    return build_graph(smoothed, cfg, prescale=prescale, int8=int8, opset=plan_opset(plan))


def embed_model(model: onnx.ModelProto, tokenizer: Path, texts: Sequence[str]) -> np.ndarray:
    """Embeddings of ``texts`` by an in-memory model (through the real Embedder)."""
    from engine.dedup.embedder import Embedder

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        return Embedder(path, tokenizer, providers="cpu").embed(list(texts))


def guard_texts() -> list[str]:
    """Held-out texts for the build's fidelity check (a seed calibration never uses)."""
    return list(DEMO_TEXTS) + persona_texts(GUARD_TEXTS, seed=7919)


def build_cpu(
    weights: Weights, cfg: BertConfig, tokenizer: Path, plan: Int8Plan = DEFAULT_PLAN
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The faithful CPU model and its build record; fp32 when int8 misses the bounds."""
    fp32 = build_fp32(weights, cfg)
    stats = calibrate(fp32, tokenizer, persona_texts(CALIBRATION_TEXTS, seed=0), cfg.layers)
    model = quantise(weights, cfg, stats, plan)
    texts = guard_texts()
    fidelity: Fidelity = compare(embed_model(model, tokenizer, texts), embed_model(fp32, tokenizer, texts))
    record: dict[str, Any] = {"plan": plan.describe(), "opset": plan_opset(plan), "fidelity": fidelity.as_dict()}
    if fidelity.faithful:
        return model, {**record, "variant": "int8"}
    log.warning("int8 build not faithful (%s); using fp32 on the CPU", fidelity.as_dict())
    return fp32, {**record, "variant": "fp32"}


def build_cuda_fp16(weights: Weights, cfg: BertConfig) -> onnx.ModelProto:
    """fp16 weights and compute for the CUDA provider (fused ops; int64 inputs, fp32 output)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = build_graph(weights, cfg, fused=True)
    # Pooling sums at most 512 vectors of LayerNorm outputs: fp16 holds that range.
    converted: onnx.ModelProto = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)
    return converted
