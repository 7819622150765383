"""SmoothQuant for the BERT encoder: move activation outliers into the weights before int8.

A few hidden channels carry activations 10-20x larger than the rest, so one int8
scale per tensor rounds the ordinary channels coarsely. For a linear ``X @ W`` we
divide input channel j by s_j = a_j**alpha / w_j**(1 - alpha) (a_j: its largest
activation on calibration texts, w_j: its largest weight) and multiply weight row j
by s_j: the product is unchanged in exact arithmetic, and both factors quantise well.
The division is free for the attention output projection (folded into the value
weights) and costs one Mul elsewhere (post-LN BERT reuses those inputs as residuals).
"""

from __future__ import annotations

import numpy as np

from engine.dedup.onnx_build.calibrate import InputStats

__all__ = ["smooth"]

Weights = dict[str, np.ndarray]


def _factors(stats: InputStats, weight_rows: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = a_j**alpha / w_j**(1 - alpha), guarded against dead channels."""
    a = np.maximum(np.maximum(-stats.low, stats.high), 1e-5).astype(np.float64)
    w = np.maximum(weight_rows, 1e-5).astype(np.float64)
    factors: np.ndarray = a**alpha / w ** (1.0 - alpha)
    return factors


def smooth(
    weights: Weights,
    stats: dict[str, InputStats],
    layers: int,
    alpha: dict[str, float],
    only: set[str] | None = None,
) -> tuple[Weights, dict[str, np.ndarray], dict[str, InputStats]]:
    """Smoothed weights, the graph's input prescales and the smoothed input statistics.

    ``alpha`` maps a group (``qkv``, ``o``, ``ffn1``, ``ffn2``) to its migration
    strength; groups not in it, and linears not in ``only`` (when given), are left alone.
    """
    w, stats = dict(weights), dict(stats)
    prescale: dict[str, np.ndarray] = {}
    for i in range(layers):
        p = f"encoder.layer.{i}"
        by_group = {
            "qkv": [f"{p}.attention.self.{n}.weight" for n in ("query", "key", "value")],
            "ffn1": [f"{p}.intermediate.dense.weight"],
            "ffn2": [f"{p}.output.dense.weight"],
        }
        for group, names in by_group.items():
            key = f"l{i}.{group}"
            if group not in alpha or (only is not None and key not in only):
                continue
            rows = np.max([np.abs(w[n]).max(axis=0) for n in names], axis=0)
            s = _factors(stats[key], rows, alpha[group])
            for n in names:  # HF stores [out, in]: input channel j is column j
                w[n] = (w[n] * s[None, :]).astype(np.float32)
            prescale[key] = (1.0 / s).astype(np.float32)
            stats[key] = stats[key].scaled(1.0 / s)
        if "o" in alpha and (only is None or f"l{i}.o" in only):
            # The context is linear in the value projection, so divide there for free.
            key, o, v = f"l{i}.o", f"{p}.attention.output.dense.weight", f"{p}.attention.self.value"
            s = _factors(stats[key], np.abs(w[o]).max(axis=0), alpha["o"])
            w[f"{v}.weight"] = (w[f"{v}.weight"] / s[:, None]).astype(np.float32)
            w[f"{v}.bias"] = (w[f"{v}.bias"] / s).astype(np.float32)
            w[o] = (w[o] * s[None, :]).astype(np.float32)
            stats[key] = stats[key].scaled(1.0 / s)
    return w, prescale, stats
