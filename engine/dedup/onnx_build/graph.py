"""Write the BERT sentence encoder (all-MiniLM-L6-v2 family) as an ONNX graph, without torch.

The graph follows the Hugging Face BertModel export (MatMul + Add biases, the
``(1 - mask) * -10000`` attention bias, erf GELU), then mean pooling over the
attention mask and L2 normalisation; its one output is ``sentence_embedding``
[batch, hidden]. Inputs: ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from engine.dedup.onnx_build.layers import fused_layer, layer_norm, plain_layer
from engine.dedup.onnx_build.weights import BertConfig, Int8Linear
from engine.dedup.onnx_build.writer import GraphWriter

__all__ = ["OPSET", "build_graph"]

OPSET = 17  # LayerNormalization is a standard op from 17


def build_graph(
    weights: dict[str, np.ndarray],
    cfg: BertConfig,
    fused: bool = False,
    prescale: dict[str, np.ndarray] | None = None,
    int8: dict[str, Int8Linear] | None = None,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """The fp32 encoder + mean pooling + L2 norm as an ONNX model (default opset 17).

    ``fused`` writes attention, residual LayerNorms and GELU as onnxruntime's contrib
    ops (for CUDA; on CPU the plain graph ran faster at persona lengths); otherwise
    standard ONNX ops only. ``prescale`` maps ``l{i}.qkv``/``l{i}.ffn1``/``l{i}.ffn2``
    to per-channel factors multiplied into that linear's input (plain graph only; see
    smooth.py, which scales the weights to match); ``int8`` maps linear names
    (``l{i}.qkv``, ``l{i}.o``, ``l{i}.ffn1``, ``l{i}.ffn2``) to their int8 form.
    ``opset`` 21 lets per-row int8 linears quantise with one QuantizeLinear (see linears.py).
    """
    prescale, int8 = prescale or {}, int8 or {}
    if fused and (prescale or int8):
        raise ValueError("prescale and int8 apply to the plain graph only")
    w, g = weights, GraphWriter(opset)
    # Embeddings: word + position (0..seq-1) + token type, then LayerNorm.
    word = g.op("Gather", [g.const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"])
    # position_ids[:, :seq] as the exporter slices it (a scalar Range trips ORT's optimizer).
    seq = g.op("Shape", ["input_ids"], start=1, end=2)
    table = np.arange(cfg.max_positions, dtype=np.int64)[None]
    positions = g.op(
        "Slice",
        [
            g.const("position_ids", table),
            g.const("zero_1d", np.array([0], dtype=np.int64)),
            seq,
            g.const("one_1d", np.array([1], dtype=np.int64)),
        ],
    )
    pos = g.op(
        "Gather",
        [g.const("position_embeddings", w["embeddings.position_embeddings.weight"]), positions],
    )
    types = g.op(
        "Gather",
        [
            g.const("token_type_embeddings", w["embeddings.token_type_embeddings.weight"]),
            "token_type_ids",
        ],
    )
    x = layer_norm(g, g.op("Add", [g.op("Add", [word, pos]), types]), w, "embeddings.LayerNorm", cfg.eps)
    if fused:  # the Attention op takes the 0/1 mask itself
        mask_i32 = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)
        for i in range(cfg.layers):
            x = fused_layer(g, x, mask_i32, w, i, cfg)
    else:  # attention bias: 0 where attended, -10000 at padding ([batch, 1, 1, seq])
        axes = g.const("axes12", np.array([1, 2], np.int64))
        mask4 = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", axes])], to=TensorProto.FLOAT)
        inv = g.op("Sub", [g.const("one_f", np.array(1.0, dtype=np.float32)), mask4])
        bias = g.op("Mul", [inv, g.const("neg_10000", np.array(-10000.0, dtype=np.float32))])
        for i in range(cfg.layers):
            x = plain_layer(g, x, bias, w, i, cfg, prescale, int8)
    x = g.op("Identity", [x], name="last_hidden_state")
    # Mean pooling over attended tokens, then L2 normalisation (sentence-transformers' recipe).
    weights3 = g.op(
        "Cast",
        [g.op("Unsqueeze", ["attention_mask", g.const("axes2", np.array([2], np.int64))])],
        to=TensorProto.FLOAT,
        name="pool_mask",
    )
    axis1 = g.const("axes1", np.array([1], dtype=np.int64))
    summed = g.op(
        "ReduceSum",
        [g.op("Mul", [x, weights3], name="pool_masked"), axis1],
        keepdims=0,
        name="pool_sum",
    )
    count = g.op("ReduceSum", [weights3, axis1], keepdims=0, name="pool_count")
    count = g.op("Clip", [count, g.const("tiny_count", np.array(1e-9, np.float32))], name="pool_count_min")
    pooled = g.op("Div", [summed, count], name="pool_mean")
    norm = g.reduce("ReduceL2", pooled, [1], name="pool_norm")
    norm = g.op("Clip", [norm, g.const("tiny_norm", np.array(1e-12, np.float32))], name="pool_norm_min")
    g.op("Div", [pooled, norm], name="sentence_embedding")

    ids = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    out = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", cfg.hidden])
    graph = helper.make_graph(g.nodes, "bert_sentence_encoder", ids, [out], g.inits)
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="persona-engine")
    # IR 8 is readable by every onnxruntime we support; opset 21 needs IR 10 (onnxruntime 1.19+).
    model.ir_version = 8 if opset <= OPSET else 10
    onnx.checker.check_model(model)
    return model
