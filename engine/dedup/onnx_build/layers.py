"""The encoder layer as ONNX nodes: plain ops (fp32 or int8 linears) or fused contrib ops."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.dedup.onnx_build.weights import BertConfig, Int8Linear, layer_linears

__all__ = ["GraphWriter", "fused_layer", "layer_norm", "plain_layer"]


class GraphWriter:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs: Any) -> str:
        """Add a one-output node; returns its output name (``name`` or a fresh one)."""
        return self.ops(op_type, inputs, 1, name, **attrs)[0]

    def ops(self, op_type: str, inputs: list[str], n_out: int, name: str | None = None, **attrs: Any) -> list[str]:
        """Add a node with ``n_out`` outputs (``domain=`` selects a contrib op set)."""
        self._n += 1
        base = name or f"{op_type.lower()}_{self._n}"
        outs = [base] if n_out == 1 else [f"{base}_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"{base}_node", **attrs))
        return outs


def _linear(g: GraphWriter, x: str, name: str, weight: np.ndarray, bias: np.ndarray, int8: Int8Linear | None) -> str:
    """x @ W + b in fp32 (MatMul then Add, as the exporter writes it) or int8."""
    if int8 is None:
        w_t = g.const(f"{name}.weight", np.ascontiguousarray(weight, dtype=np.float32))
        mm = g.op("MatMul", [x, w_t], name=f"{name}_matmul")
        return g.op("Add", [mm, g.const(f"{name}.bias", bias)], name=name)
    q = g.const(f"{name}.weight_q", int8.q.astype(np.int8))
    w_scale = g.const(f"{name}.weight_scale", int8.scale.astype(np.float32))
    b = g.const(f"{name}.bias", bias.astype(np.float32))
    if int8.act_scale is None:
        return g.op("DynamicQuantizeMatMul", [x, q, w_scale, "", b], name=name, domain="com.microsoft")
    a_scale = g.const(f"{name}.act_scale", np.array(int8.act_scale, dtype=np.float32))
    a_zero = g.const(f"{name}.act_zero", np.array(int8.act_zero, dtype=np.uint8))
    xq = g.op("QuantizeLinear", [x, a_scale, a_zero], name=f"{name}_quant")
    ms = "com.microsoft"
    if not int8.two_pass:
        return g.op("MatMulIntegerToFloat", [xq, q, a_scale, w_scale, a_zero, "", b], name=name, domain=ms)
    first = g.op("MatMulIntegerToFloat", [xq, q, a_scale, w_scale, a_zero, "", b], domain=ms)
    # The rounding residual lies in [-scale/2, scale/2] (more where the range clipped):
    # a second uint8 pass at scale/254 around 128 carries it.
    residual = g.op("Sub", [x, g.op("DequantizeLinear", [xq, a_scale, a_zero])])
    r_scale = g.const(f"{name}.res_scale", np.array(int8.act_scale / 254.0, dtype=np.float32))
    r_zero = g.const(f"{name}.res_zero", np.array(128, dtype=np.uint8))
    rq = g.op("QuantizeLinear", [residual, r_scale, r_zero])
    second = g.op("MatMulIntegerToFloat", [rq, q, r_scale, w_scale, r_zero], domain=ms)
    return g.op("Add", [first, second], name=name)


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
    key = f"l{i}.qkv"
    qkv = _linear(g, _scaled(g, x, key, prescale), key, *lin[key], int8.get(key))
    sizes = g.const(f"l{i}.qkv_split", np.full(3, cfg.hidden, dtype=np.int64))
    q, k, v = g.ops("Split", [qkv, sizes], 3, axis=-1)
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
    attn = _linear(g, context, f"l{i}.o", *lin[f"l{i}.o"], int8.get(f"l{i}.o"))
    x = layer_norm(g, g.op("Add", [attn, x]), w, f"{p}.attention.output.LayerNorm", cfg.eps)
    key = f"l{i}.ffn1"
    inner = _gelu(g, _linear(g, _scaled(g, x, key, prescale), key, *lin[key], int8.get(key)), i)
    key = f"l{i}.ffn2"
    out = _linear(g, _scaled(g, inner, key, prescale), key, *lin[key], int8.get(key))
    return layer_norm(g, g.op("Add", [out, x]), w, f"{p}.output.LayerNorm", cfg.eps)


def _gelu(g: GraphWriter, x: str, i: int) -> str:
    """x * 0.5 * (1 + erf(x / sqrt 2)), the exact GELU in the exporter's op order."""
    sqrt2 = g.const(f"l{i}.sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    one = g.const(f"l{i}.one", np.array(1.0, dtype=np.float32))
    half = g.const(f"l{i}.half", np.array(0.5, dtype=np.float32))
    erf = g.op("Add", [g.op("Erf", [g.op("Div", [x, sqrt2])]), one])
    return g.op("Mul", [g.op("Mul", [x, erf]), half])
