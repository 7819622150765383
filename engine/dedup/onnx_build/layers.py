"""The encoder layer as ONNX nodes: plain ops (fp32 or int8 linears) or fused contrib ops."""

from __future__ import annotations

import math

import numpy as np

from engine.dedup.onnx_build.linears import linear, quantize_static, static_product
from engine.dedup.onnx_build.weights import BertConfig, Int8Linear, layer_linears
from engine.dedup.onnx_build.writer import GraphWriter

__all__ = ["GraphWriter", "fused_layer", "layer_norm", "plain_layer"]


def layer_norm(g: GraphWriter, x: str, w: dict[str, np.ndarray], prefix: str, eps: float) -> str:
    gamma = g.const(f"{prefix}.gamma", w[f"{prefix}.weight"])
    beta = g.const(f"{prefix}.beta", w[f"{prefix}.bias"])
    return g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)


def _scaled(g: GraphWriter, x: str, key: str, prescale: dict[str, np.ndarray]) -> str:
    """x times the per-channel factors ``prescale[key]`` (smoothing before int8), else x."""
    if key not in prescale:
        return x
    return g.op(
        "Mul",
        [x, g.const(f"{key}.prescale", prescale[key].astype(np.float32))],
        name=f"{key}_prescaled",
    )


def _attention(
    g: GraphWriter,
    x: str,
    mask_bias: str,
    lin: dict[str, tuple[np.ndarray, np.ndarray]],
    i: int,
    cfg: BertConfig,
    prescale: dict[str, np.ndarray],
    int8: dict[str, Int8Linear],
) -> str:
    """Multi-head self-attention of layer ``i`` (before the output projection)."""
    q, k, v = _projections(g, _scaled(g, x, f"l{i}.qkv", prescale), lin, i, cfg, int8.get(f"l{i}.qkv"))
    head = cfg.hidden // cfg.heads
    split = g.const(f"l{i}.split_shape", np.array([0, 0, cfg.heads, head], dtype=np.int64))
    merge = g.const(f"l{i}.merge_shape", np.array([0, 0, cfg.hidden], dtype=np.int64))
    q = g.op("Transpose", [g.op("Reshape", [q, split])], perm=[0, 2, 1, 3])
    k = g.op("Transpose", [g.op("Reshape", [k, split])], perm=[0, 2, 3, 1])
    v = g.op("Transpose", [g.op("Reshape", [v, split])], perm=[0, 2, 1, 3])
    scale = g.const(f"l{i}.scale", np.array(math.sqrt(head), dtype=np.float32))
    scores = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), scale]), mask_bias])
    probs = g.op("Softmax", [scores], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    return g.op("Reshape", [context, merge], name=f"l{i}.context")


def _projections(
    g: GraphWriter,
    x: str,
    lin: dict[str, tuple[np.ndarray, np.ndarray]],
    i: int,
    cfg: BertConfig,
    int8: Int8Linear | None,
) -> list[str]:
    """Query, key and value of layer ``i``: one packed linear and a Split, or three int8 products.

    With static int8 activations the input is quantised once and each of Q, K, V is
    its own product: that skips the Split's copy of the packed output (2-3% of the
    int8 graph's time).
    """
    key, weight, bias = f"l{i}.qkv", *lin[f"l{i}.qkv"]
    if int8 is not None and int8.act_scale is not None and not int8.two_pass and not int8.per_row:
        xq, a_scale, a_zero = quantize_static(g, x, key, int8)
        cols = [slice(j * cfg.hidden, (j + 1) * cfg.hidden) for j in range(3)]
        return [
            static_product(g, xq, a_scale, a_zero, f"{key}.{part}", int8.columns(c.start, c.stop), bias[c])
            for part, c in zip("qkv", cols, strict=True)
        ]
    qkv = linear(g, x, key, weight, bias, int8)
    sizes = g.const(f"l{i}.qkv_split", np.full(3, cfg.hidden, dtype=np.int64))
    return g.ops("Split", [qkv, sizes], 3, axis=-1)


def fused_layer(g: GraphWriter, x: str, mask: str, w: dict[str, np.ndarray], i: int, cfg: BertConfig) -> str:
    """One encoder layer from fused contrib ops (Attention, SkipLayerNorm, BiasGelu)."""
    p = f"encoder.layer.{i}"
    lin = layer_linears(w, i)
    ms = "com.microsoft"

    def skip_ln(y: str, skip: str, bias: np.ndarray, prefix: str) -> str:
        inputs = [
            y,
            skip,
            g.const(f"{prefix}.gamma", w[f"{prefix}.weight"]),
            g.const(f"{prefix}.beta", w[f"{prefix}.bias"]),
            g.const(f"{prefix}.skip_bias", bias),
        ]
        return g.op("SkipLayerNormalization", inputs, domain=ms, epsilon=cfg.eps)

    def weight(name: str) -> str:
        return g.const(f"{name}.weight", np.ascontiguousarray(lin[name][0]))

    context = g.op(
        "Attention",
        [x, weight(f"l{i}.qkv"), g.const(f"l{i}.qkv.bias", lin[f"l{i}.qkv"][1]), mask],
        name=f"l{i}.context",
        domain=ms,
        num_heads=cfg.heads,
    )
    attn = g.op("MatMul", [context, weight(f"l{i}.o")], name=f"l{i}.o_matmul")
    x = skip_ln(attn, x, lin[f"l{i}.o"][1], f"{p}.attention.output.LayerNorm")
    inner = g.op(
        "BiasGelu",
        [
            g.op("MatMul", [x, weight(f"l{i}.ffn1")], name=f"l{i}.ffn1_matmul"),
            g.const(f"l{i}.ffn1.bias", lin[f"l{i}.ffn1"][1]),
        ],
        domain=ms,
    )
    out = g.op("MatMul", [inner, weight(f"l{i}.ffn2")], name=f"l{i}.ffn2_matmul")
    return skip_ln(out, x, lin[f"l{i}.ffn2"][1], f"{p}.output.LayerNorm")


def plain_layer(
    g: GraphWriter,
    x: str,
    mask_bias: str,
    w: dict[str, np.ndarray],
    i: int,
    cfg: BertConfig,
    prescale: dict[str, np.ndarray],
    int8: dict[str, Int8Linear],
) -> str:
    """One encoder layer from standard ops; linears in ``int8`` are quantised."""
    p = f"encoder.layer.{i}"
    lin = layer_linears(w, i)
    context = _attention(g, x, mask_bias, lin, i, cfg, prescale, int8)
    attn = linear(g, context, f"l{i}.o", *lin[f"l{i}.o"], int8.get(f"l{i}.o"))
    x = layer_norm(g, g.op("Add", [attn, x]), w, f"{p}.attention.output.LayerNorm", cfg.eps)
    key = f"l{i}.ffn1"
    inner = _gelu(g, linear(g, _scaled(g, x, key, prescale), key, *lin[key], int8.get(key)), i)
    key = f"l{i}.ffn2"
    out = linear(g, _scaled(g, inner, key, prescale), key, *lin[key], int8.get(key))
    return layer_norm(g, g.op("Add", [out, x]), w, f"{p}.output.LayerNorm", cfg.eps)


def _gelu(g: GraphWriter, x: str, i: int) -> str:
    """x * 0.5 * (1 + erf(x / sqrt 2)), the exact GELU in the exporter's op order."""
    sqrt2 = g.const(f"l{i}.sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    one = g.const(f"l{i}.one", np.array(1.0, dtype=np.float32))
    half = g.const(f"l{i}.half", np.array(0.5, dtype=np.float32))
    erf = g.op("Add", [g.op("Erf", [g.op("Div", [x, sqrt2])]), one])
    return g.op("Mul", [g.op("Mul", [x, erf]), half])
