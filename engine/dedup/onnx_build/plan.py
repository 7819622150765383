"""Int8 plans: which linears are quantised, how, and how hard their inputs are smoothed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["DEFAULT_PLAN", "KEEP_FP32", "Int8Plan"]


def _named(name: str, names: Sequence[str]) -> bool:
    """Whether linear ``name`` (``l3.ffn2``) is listed itself or by its group (``ffn2``)."""
    return name in names or name.split(".")[1] in names


class Int8Plan:
    """Which linears become int8, how hard to smooth them, and how to quantise each one.

    Linear names (``l3.ffn2``) or groups (``ffn2``) select: ``keep_fp32`` (not
    quantised), ``two_pass`` (static activations plus their rounding residual),
    ``per_row`` (one activation scale per token row, found at run time) and
    ``weight_residual`` (weights as q + r / 254, two int8 products).
    """

    def __init__(
        self,
        alpha: dict[str, float] | None = None,
        keep_fp32: Sequence[str] = (),
        use_gptq: bool = True,
        static: bool = True,
        two_pass: Sequence[str] = (),
        per_row: Sequence[str] = (),
        weight_residual: Sequence[str] = (),
    ) -> None:
        self.alpha = alpha if alpha is not None else {g: 0.85 for g in ("qkv", "o", "ffn1", "ffn2")}
        self.keep_fp32 = tuple(keep_fp32)
        self.use_gptq = use_gptq
        self.static = static
        self.two_pass = tuple(two_pass)
        self.per_row = tuple(per_row)
        self.weight_residual = tuple(weight_residual)

    def quantised(self, name: str) -> bool:
        return not _named(name, self.keep_fp32)

    def two_passes(self, name: str) -> bool:
        return self.static and _named(name, self.two_pass)

    def rows(self, name: str) -> bool:
        return _named(name, self.per_row)

    def residual(self, name: str) -> bool:
        return _named(name, self.weight_residual)

    def describe(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "keep_fp32": list(self.keep_fp32),
            "gptq": self.use_gptq,
            "static": self.static,
            "two_pass": list(self.two_pass),
            "per_row": list(self.per_row),
            "weight_residual": list(self.weight_residual),
        }


#: The previous recipe (int8-sq85-gptq-static-keep5-v1): these five linears in fp32,
#: the rest static int8; p99 0.0085, but the five ran at a sixth of int8's speed and
#: took 35% of its kernel time. Kept for bench/embed.py --candidates.
KEEP_FP32 = ("l0.qkv", "l0.ffn1", "l0.ffn2", "l1.ffn2", "l2.ffn2")

#: The chosen plan: every linear int8. Measured with bench/embed.py --candidates (2 cores,
#: texts/s with the parallel CPU runs; p99 = 99th percentile of the pairwise cosine change
#: vs fp32 on 2,008 held-back texts; guard and test texts agree within 0.0002):
#: - all static (SmoothQuant .85 + GPTQ): 2,010 texts/s, p99 0.0132, not faithful. Making
#:   one linear fp32 at a time showed the error sits in the ffn2 inputs (GELU outputs) of
#:   layers 0-4, where the [CLS] row spans 3-5x the range of the other tokens: one static
#:   scale is 3-5x too coarse for every other token. A separate static [CLS] scale got
#:   p99 0.0103-0.0108; one scale per token row, found at run time, 0.0100 at 1,858 texts/s.
#: - ffn2 smoothed at alpha 0.75 (0.85 elsewhere) suits per-row scales; with per-row
#:   scales everywhere 0.75 beat 0.5/0.65/0.8/0.9, and unsmoothed ffn2 (no Mul) gave 0.0113.
#: - weights as q + r / 254 on ffn2 of layers 0-2 (one more int8 product each, ~6% of the
#:   time): p99 0.0091 at 1,742-1,817 texts/s. This plan.
#: - per-row scales on every linear: 0.0090, but only 1,458 texts/s (its per-row rescale of
#:   the wide qkv/ffn1 outputs costs more than it gains); a fixed floor instead of each
#:   row's minimum (one reduction less) lost 0.001 of p99.
DEFAULT_PLAN = Int8Plan(
    alpha={"qkv": 0.85, "o": 0.85, "ffn1": 0.85, "ffn2": 0.75},
    per_row=("ffn2",),
    weight_residual=("l0.ffn2", "l1.ffn2", "l2.ffn2"),
)
