"""LSH band choice: the recall-first rule and the classic weighted rule."""

from __future__ import annotations

import numpy as np
import pytest

from engine.dedup.lsh_params import (
    DEFAULT_MAX_MISS,
    choose_params,
    collision_probability,
    false_negative_area,
    false_positive_area,
    miss_at,
    optimal_params,
    recall_params,
)

THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


def _grid_areas(threshold: float, num_perm: int) -> dict[tuple[int, int], tuple[float, float]]:
    """(FP area, FN area) of every config by the trapezoid rule on a fine grid.

    Independent of the module's Gauss-Legendre quadrature; accurate to ~1e-8 here.
    """
    lo = np.linspace(0.0, threshold, 20001)
    hi = np.linspace(threshold, 1.0, 20001)
    out = {}
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - lo**r) ** b, lo)
            fn = np.trapezoid((1 - hi**r) ** b, hi)
            out[(b, r)] = (float(fp), float(fn))
    return out


@pytest.fixture(scope="module")
def areas() -> dict[float, dict[tuple[int, int], tuple[float, float]]]:
    return {t: _grid_areas(t, 128) for t in THRESHOLDS}


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_recall_params_meet_the_miss_bound(threshold: float) -> None:
    b, r = recall_params(threshold, 128)
    assert b * r <= 128
    # S-curve at the threshold computed from scratch, not via the module
    p = 1.0 - (1.0 - threshold**r) ** b
    assert p >= 1.0 - DEFAULT_MAX_MISS
    assert collision_probability(threshold, b, r) == pytest.approx(p, abs=1e-12)
    assert miss_at(threshold, b, r) == pytest.approx(1.0 - p, rel=1e-6, abs=1e-15)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_recall_params_minimise_false_positive_area(
        threshold: float, areas: dict[float, dict[tuple[int, int], tuple[float, float]]]) -> None:
    chosen = recall_params(threshold, 128)
    meeting = {c: a for c, a in areas[threshold].items()
               if (1 - threshold ** c[1]) ** c[0] <= DEFAULT_MAX_MISS}
    best = min(fp for fp, _ in meeting.values())
    assert chosen in meeting
    assert areas[threshold][chosen][0] <= best + 1e-7


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_areas_match_an_independent_integration(
        threshold: float, areas: dict[float, dict[tuple[int, int], tuple[float, float]]]) -> None:
    for cfg in [(15, 7), (16, 8), (20, 6), (32, 4), (5, 25), (1, 1), (128, 1)]:
        fp, fn = areas[threshold][cfg]
        assert false_positive_area(threshold, *cfg) == pytest.approx(fp, abs=1e-7)
        assert false_negative_area(threshold, *cfg) == pytest.approx(fn, abs=1e-7)


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.1, 0.9)])
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_optimal_params_is_the_weighted_argmin(
        threshold: float, weights: tuple[float, float],
        areas: dict[float, dict[tuple[int, int], tuple[float, float]]]) -> None:
    fpw, fnw = weights
    errs = {c: fpw * fp + fnw * fn for c, (fp, fn) in areas[threshold].items()}
    chosen = optimal_params(threshold, 128, fpw, fnw)
    assert errs[chosen] <= min(errs.values()) + 1e-7


def test_optimal_params_match_datasketch() -> None:
    # values printed by datasketch 1.6's _optimal_param for the same inputs
    assert optimal_params(0.9, 128) == (5, 25)
    assert optimal_params(0.7, 128, 0.1, 0.9) == (20, 6)
    assert optimal_params(0.8, 128, 0.05, 0.95) == (16, 8)


def test_recall_rule_beats_the_classic_rule_at_the_threshold() -> None:
    # why the index does not use the classic rule: it misses ~69% of pairs at J = 0.9
    assert miss_at(0.9, *optimal_params(0.9, 128)) > 0.5
    assert miss_at(0.9, *recall_params(0.9, 128)) < 1e-4
    assert recall_params(0.9, 128) == (15, 7)


def test_recall_params_with_too_few_permutations_takes_the_smallest_miss() -> None:
    b, r = recall_params(0.9, 4)
    assert (b, r) == (4, 1)


def test_choose_params() -> None:
    assert choose_params(0.9, 128, None, None) == recall_params(0.9, 128)
    assert choose_params(0.9, 128, 16, None) == (16, 8)
    assert choose_params(0.9, 128, None, 6) == (21, 6)
    assert choose_params(0.9, 128, 10, 10) == (10, 10)
    for bad in [(0, 5), (20, 7), (-1, None)]:
        with pytest.raises(ValueError, match="bands"):
            choose_params(0.9, 128, *bad)
    with pytest.raises(ValueError, match="threshold"):
        choose_params(0.0, 128, None, None)
    with pytest.raises(ValueError, match="num_perm"):
        choose_params(0.9, 0, None, None)
