"""GPTQ: int8 weights chosen to minimise the layer's output error on calibration inputs.

Rounding each weight to nearest ignores that errors in correlated input channels
add up; GPTQ (Frantar et al., 2022) quantises one input channel at a time and
pushes its rounding error onto the channels not yet quantised, weighted by the
inverse Hessian ``(X^T X)^-1`` of the calibration inputs. Per-column scales stay
max-abs, so onnxruntime's int8 kernels run the result unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gptq", "round_to_nearest", "with_residual"]

_QMAX = 127


def round_to_nearest(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-column int8 of ``weight`` [K, N]: (q int8 [K, N], scale [N])."""
    scale = np.maximum(np.abs(weight).max(axis=0) / _QMAX, 1e-12)
    q = np.clip(np.round(weight / scale), -_QMAX, _QMAX).astype(np.int8)
    return q, scale.astype(np.float32)


def gptq(weight: np.ndarray, gram: np.ndarray, damp: float = 0.01, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Per-column int8 of ``weight`` [K, N] given the inputs' ``gram`` = X^T X [K, K]."""
    w = weight.astype(np.float64).copy()
    k_dim = w.shape[0]
    scale = np.maximum(np.abs(w).max(axis=0) / _QMAX, 1e-12)
    h = gram.astype(np.float64).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[dead, :] = 0.0
    h[np.diag_indices(k_dim)] += damp * np.mean(np.diag(h))
    # Quantise the channels with the most input energy first ("act order").
    order = np.argsort(-np.diag(h), kind="stable")
    w, h = w[order], h[np.ix_(order, order)]
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper factor of H^-1
    q = np.zeros(w.shape, dtype=np.int8)
    for b0 in range(0, k_dim, block):
        b1 = min(b0 + block, k_dim)
        wb, hb = w[b0:b1].copy(), hinv[b0:b1, b0:b1]
        err = np.zeros_like(wb)
        for k in range(b1 - b0):
            row = np.clip(np.round(wb[k] / scale), -_QMAX, _QMAX)
            q[b0 + k] = row
            err[k] = (wb[k] - row * scale) / hb[k, k]
            wb[k + 1 :] -= np.outer(hb[k, k + 1 :], err[k])
        w[b1:] -= hinv[b0:b1, b1:].T @ err
    restore = np.empty_like(order)
    restore[order] = np.arange(k_dim)
    return q[restore], scale.astype(np.float32)


def with_residual(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two int8 terms: W ~= scale * (q + r / 254), per column; (q, scale, r), error <= scale / 508.

    q is rounded to nearest (not GPTQ) so that every residual lies within half a step
    and its own int8 grid at scale / 254 holds it without clipping.
    """
    q, scale = round_to_nearest(weight)
    step = scale.astype(np.float64) / (2 * _QMAX)
    rest = (weight.astype(np.float64) - q.astype(np.float64) * scale) / step
    r = np.clip(np.round(rest), -_QMAX, _QMAX).astype(np.int8)
    return q, scale, r
