"""The build recipes: fp32 reference, the faithful int8 CPU model, and fp16 for CUDA.

The CPU recipe was chosen with bench/embed.py (see its table): SmoothQuant moves
activation outliers into the weights, GPTQ picks the int8 weights, and activations
use static per-tensor scales calibrated on persona texts, so an item's embedding does
not depend on its batch-mates. Every build is checked against fp32 on held-out
persona texts; one that is not faithful is replaced by fp32, with the reason recorded.
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
from engine.dedup.onnx_build.gptq import gptq, round_to_nearest
from engine.dedup.onnx_build.graph import build_graph
from engine.dedup.onnx_build.smooth import smooth
from engine.dedup.onnx_build.weights import BertConfig, Int8Linear, layer_linears

__all__ = ["CPU_RECIPE", "Int8Plan", "build_cpu", "build_cuda_fp16", "build_fp32", "embed_model"]

log = logging.getLogger(__name__)

Weights = dict[str, np.ndarray]

#: Bump when a recipe changes: cached files built by another recipe are rebuilt.
FP32_RECIPE = "fp32-v1"
CPU_RECIPE = "int8-sq85-gptq-static-keep5-v1"
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


def _named(name: str, names: Sequence[str]) -> bool:
    """Whether linear ``name`` (``l3.ffn2``) is listed itself or by its group (``ffn2``)."""
    return name in names or name.split(".")[1] in names


class Int8Plan:
    """Which linears become int8, how hard to smooth them, and how to pick their weights."""

    def __init__(
        self,
        alpha: dict[str, float] | None = None,
        keep_fp32: Sequence[str] = (),
        use_gptq: bool = True,
        static: bool = True,
        two_pass: Sequence[str] = (),
    ) -> None:
        self.alpha = alpha if alpha is not None else {g: 0.85 for g in ("qkv", "o", "ffn1", "ffn2")}
        self.keep_fp32 = tuple(keep_fp32)  # linear names (l3.ffn2) or groups (ffn2)
        self.use_gptq = use_gptq
        self.static = static
        self.two_pass = tuple(two_pass)  # linears or groups given two-pass activations

    def quantised(self, name: str) -> bool:
        return not _named(name, self.keep_fp32)

    def two_passes(self, name: str) -> bool:
        return self.static and _named(name, self.two_pass)

    def describe(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "keep_fp32": list(self.keep_fp32),
            "gptq": self.use_gptq,
            "static": self.static,
            "two_pass": list(self.two_pass),
        }


#: Kept in fp32: the linears whose int8 error moved embeddings most (measured one by
#: one: early layers matter most, ffn2's GELU outputs quantise worst); all int8 gave
#: p99 0.0136, this plan 0.0085 (bench/embed.py --candidates); two-pass activations on
#: these five instead of fp32 gave 0.0111 (per-channel weight rounding then dominates).
KEEP_FP32 = ("l0.qkv", "l0.ffn1", "l0.ffn2", "l1.ffn2", "l2.ffn2")
DEFAULT_PLAN = Int8Plan(keep_fp32=KEEP_FP32)


def build_fp32(weights: Weights, cfg: BertConfig) -> onnx.ModelProto:
    """The plain fp32 graph (the reference every other variant is measured against)."""
    return build_graph(weights, cfg)


def _int8_linear(weight: np.ndarray, stats: InputStats, plan: Int8Plan, two_pass: bool = False) -> Int8Linear:
    q, scale = gptq(weight, stats.gram) if plan.use_gptq else round_to_nearest(weight)
    if not plan.static:
        return Int8Linear(q, scale)
    # uint8 over the calibrated range, widened to include 0 (exactly representable).
    low, high = min(float(stats.low.min()), 0.0), max(float(stats.high.max()), 0.0)
    act_scale = max(high - low, 1e-8) / 255.0
    return Int8Linear(q, scale, act_scale, int(round(-low / act_scale)), two_pass)


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
                int8[name] = _int8_linear(weight, stats[name], plan, plan.two_passes(name))
    return build_graph(smoothed, cfg, prescale=prescale, int8=int8)


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
    record: dict[str, Any] = {"plan": plan.describe(), "fidelity": fidelity.as_dict()}
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
