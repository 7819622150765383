"""A plain numpy forward pass of the BERT sentence encoder, to check the ONNX graph against."""

from __future__ import annotations

import math

import numpy as np

from engine.dedup.onnx_build.weights import BertConfig

__all__ = ["reference_embed"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: np.ndarray = (x - mean) / np.sqrt(var + eps) * gamma + beta
    return out


def reference_embed(
    weights: dict[str, np.ndarray], cfg: BertConfig, input_ids: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Sentence embeddings [batch, hidden] in float64: encoder, mean pooling, L2 norm."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    batch, seq = input_ids.shape
    head = cfg.hidden // cfg.heads

    def linear(x: np.ndarray, prefix: str) -> np.ndarray:
        out: np.ndarray = x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]
        return out

    x = (
        w["embeddings.word_embeddings.weight"][input_ids]
        + w["embeddings.position_embeddings.weight"][np.arange(seq)][None]
        + w["embeddings.token_type_embeddings.weight"][np.zeros_like(input_ids)]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], cfg.eps)
    bias = (1.0 - mask[:, None, None, :].astype(np.float64)) * -10000.0
    for i in range(cfg.layers):
        p = f"encoder.layer.{i}"

        def heads(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, seq, cfg.heads, head).transpose(0, 2, 1, 3)

        q = heads(linear(x, f"{p}.attention.self.query"))
        k = heads(linear(x, f"{p}.attention.self.key"))
        v = heads(linear(x, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, cfg.hidden)
        x = _layer_norm(
            linear(context, f"{p}.attention.output.dense") + x,
            w[f"{p}.attention.output.LayerNorm.weight"],
            w[f"{p}.attention.output.LayerNorm.bias"],
            cfg.eps,
        )
        inner = linear(x, f"{p}.intermediate.dense")
        inner = 0.5 * inner * (1.0 + _erf(inner / math.sqrt(2.0)))
        x = _layer_norm(
            linear(inner, f"{p}.output.dense") + x,
            w[f"{p}.output.LayerNorm.weight"],
            w[f"{p}.output.LayerNorm.bias"],
            cfg.eps,
        )
    m = mask[:, :, None].astype(np.float64)
    pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    out: np.ndarray = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return out
