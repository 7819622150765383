"""How faithful a quantised embedder is to fp32, in the terms dedup cares about."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Fidelity", "compare"]

#: The bounds a variant must meet to replace fp32 (issue 7).
MAX_P99 = 0.01
MIN_AGREEMENT = 0.999
THRESHOLDS = (0.9, 0.5)
MARGIN = 0.01


@dataclass(frozen=True)
class Fidelity:
    """Per-text cosine to fp32 and pairwise-similarity agreement with fp32."""

    mean: float  # mean cosine between a text's embedding and its fp32 embedding
    min: float
    p99: float  # 99th percentile of |cos_test(a, b) - cos_fp32(a, b)| over pairs
    agree_09: float  # same verdict at 0.9, pairs further than MARGIN from it
    agree_05: float
    pairs: int

    @property
    def faithful(self) -> bool:
        """p99 <= 0.01 and >= 99.9% of verdicts kept at 0.9 and 0.5."""
        return self.p99 <= MAX_P99 and self.agree_09 >= MIN_AGREEMENT and self.agree_05 >= MIN_AGREEMENT

    def as_dict(self) -> dict[str, float | bool]:
        return {**asdict(self), "faithful": self.faithful}


def compare(test: np.ndarray, reference: np.ndarray) -> Fidelity:
    """Fidelity of embeddings ``test`` to ``reference`` (same texts, unit rows)."""
    # Re-normalise: a bf16 peer's rows are unit only to bf16 precision.
    test, reference = (
        np.asarray(v, dtype=np.float32) / np.linalg.norm(v, axis=1, keepdims=True).astype(np.float32)
        for v in (test, reference)
    )
    cos = (test * reference).sum(axis=1)
    upper = np.triu_indices(len(test), 1)
    sim_test, sim_ref = (test @ test.T)[upper], (reference @ reference.T)[upper]
    agree = []
    for threshold in THRESHOLDS:
        clear = np.abs(sim_ref - threshold) > MARGIN
        same = (sim_test[clear] >= threshold) == (sim_ref[clear] >= threshold)
        agree.append(float(same.mean()) if same.size else 1.0)
    return Fidelity(
        mean=float(cos.mean()),
        min=float(cos.min()),
        p99=float(np.quantile(np.abs(sim_test - sim_ref), 0.99)) if len(upper[0]) else 0.0,
        agree_09=agree[0],
        agree_05=agree[1],
        pairs=len(upper[0]),
    )
