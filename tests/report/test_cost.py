"""The cost estimate from the config's per-model prices."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import config
from engine.report import build_report, render_text
from engine.report.cost import estimate

from .conftest import PRICES


def test_cost_with_prices(outdir: Path) -> None:
    cfg = config.from_dict({"prices": PRICES})
    r = build_report(outdir, cfg, diversity=False)
    c = r["cost"]
    assert c["configured"] and c["currency"] == "USD" and c["unpriced_models"] == []
    assert c["by_model"]["m-small"] == pytest.approx((380 * 1.0 + 450 * 2.0) / 1e6)
    assert c["by_model"]["m-big"] == pytest.approx((1200 * 10.0 + 600 * 30.0) / 1e6)
    # 420 prompt and 150 completion tokens no record carries, at the recorded mean price per token
    mean_prompt = (380 * 1.0 + 1200 * 10.0) / 1580
    mean_completion = (450 * 2.0 + 600 * 30.0) / 1050
    unattributed = (420 * mean_prompt + 150 * mean_completion) / 1e6
    assert c["unattributed_usd"] == pytest.approx(unattributed, abs=1e-6)
    assert c["total_usd"] == pytest.approx(0.00128 + 0.03 + unattributed, abs=1e-6)
    assert c["complete"]
    assert f"${c['total_usd']:.4f}" in render_text(r)


def test_no_prices_configured(outdir: Path) -> None:
    r = build_report(outdir, config.from_dict({}), diversity=False)
    assert r["cost"] == {"configured": False, "note": "no prices configured", "total_usd": None}
    assert "no prices configured" in render_text(r)
    assert build_report(outdir, None, diversity=False)["cost"]["configured"] is False


def test_a_model_without_a_price_is_named() -> None:
    usage = {"by_model": {"a": {"prompt_tokens": 1_000_000, "completion_tokens": 0}, "b": {"prompt_tokens": 5}},
             "unattributed": {"prompt_tokens": 0, "completion_tokens": 0}}
    c = estimate(usage, config.from_dict({"prices": {"a": {"prompt": 2.0}}}).prices)
    assert c["by_model"] == {"a": 2.0, "b": None} and c["unpriced_models"] == ["b"]
    assert c["total_usd"] == 2.0 and not c["complete"]


def test_unattributed_tokens_of_a_single_model() -> None:
    usage = {"by_model": {"a": {"prompt_tokens": 0, "completion_tokens": 1_000_000}},
             "unattributed": {"prompt_tokens": 1_000_000, "completion_tokens": 0}}
    c = estimate(usage, config.from_dict({"prices": {"a": {"prompt": 1.0, "completion": 3.0}}}).prices)
    assert (c["recorded_usd"], c["unattributed_usd"], c["total_usd"]) == (3.0, 1.0, 4.0)
    assert c["unattributed_method"] == "priced as a"


def test_dated_model_names_take_the_price_of_their_stem() -> None:
    usage = {"by_model": {"gpt-4o-mini-2024-07-18": {"prompt_tokens": 1_000_000, "completion_tokens": 0},
                          "gpt-4o-2024-08-06": {"prompt_tokens": 1_000_000, "completion_tokens": 0},
                          "other": {"prompt_tokens": 7}}}
    prices = config.from_dict({"prices": {"gpt-4o": {"prompt": 2.5}, "gpt-4o-mini": {"prompt": 0.15}}}).prices
    c = estimate(usage, prices)
    assert c["by_model"]["gpt-4o-mini-2024-07-18"] == 0.15  # the longest matching name, not "gpt-4o"
    assert c["by_model"]["gpt-4o-2024-08-06"] == 2.5
    assert c["by_model"]["other"] is None


def test_a_stem_prices_only_dates_and_versions() -> None:
    prices = config.from_dict({"prices": {"gpt-4o": {"prompt": 2.5}, "llama-3": {"prompt": 1.0}}}).prices
    usage = {"by_model": {m: {"prompt_tokens": 1_000_000} for m in
                          ("gpt-4o-mini", "gpt-4o-2024-08-06", "gpt-4o-latest", "llama-3.1-8b", "llama-3-0425")}}
    by = estimate(usage, prices)["by_model"]
    assert by == {"gpt-4o-mini": None, "gpt-4o-2024-08-06": 2.5, "gpt-4o-latest": 2.5, "llama-3.1-8b": None,
                  "llama-3-0425": 1.0}
