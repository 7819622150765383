"""Pure benchmark summaries: percentiles, saturation point, comparison."""

from __future__ import annotations

import pytest

from engine.bench.request import Result
from engine.bench.stats import compare, saturation, summarise


def _step(value: float, out_tps: float) -> dict:
    return {"mode": "concurrency", "value": value, "output_tokens": 1, "output_tok_per_s": out_tps,
            "req_per_s": out_tps / 10, "errors": 0, "latency_ms": {"p50": value, "p99": 2 * value}}


def test_summarise_rates_percentiles_and_streaming_metrics() -> None:
    results = [Result(ok=True, latency=0.1 * (i + 1), ttft=0.01, itl=[0.002] * 9, prompt_tokens=10,
                      completion_tokens=10) for i in range(10)]
    results.append(Result(ok=False, latency=0.05, error="HTTP 503"))
    s = summarise(results, 2.0, "concurrency", 4)
    assert (s["requests"], s["completed"], s["errors"], s["error_kinds"]) == (11, 10, 1, {"HTTP 503": 1})
    assert s["req_per_s"] == pytest.approx(5.0) and s["output_tok_per_s"] == pytest.approx(50.0)
    assert s["input_tok_per_s"] == pytest.approx(50.0) and s["total_tok_per_s"] == pytest.approx(100.0)
    assert s["latency_ms"]["p50"] == pytest.approx(550.0) and s["latency_ms"]["p99"] == pytest.approx(991.0)
    assert s["ttft_ms"]["p99"] == pytest.approx(10.0) and s["itl_ms"]["mean"] == pytest.approx(2.0)
    assert s["tpot_ms"]["mean"] == pytest.approx((550.0 - 10.0) / 9)
    plain = summarise([Result(ok=True, latency=0.1, completion_tokens=3)], 1.0, "concurrency", 1)
    assert plain["ttft_ms"] is None and plain["itl_ms"] is None


def test_saturation_is_the_first_step_within_5_percent_of_the_best() -> None:
    steps = [_step(1, 100), _step(4, 380), _step(16, 960), _step(64, 1000), _step(256, 990)]
    sat = saturation(steps)
    assert sat is not None and sat["value"] == 16 and sat["saturated"] and sat["max_throughput"] == 1000
    rising = saturation([_step(1, 100), _step(4, 400)])
    assert rising is not None and rising["value"] == 4 and not rising["saturated"]
    assert saturation([]) is None


def test_compare_pairs_steps_and_says_which_way_is_better() -> None:
    a = {"steps": [_step(1, 100), _step(4, 400)]}
    b = {"steps": [_step(1, 120), _step(8, 700)]}
    rows = compare(a, b)
    assert {r["value"] for r in rows} == {1}
    tput = next(r for r in rows if r["metric"] == "output tok/s")
    assert tput["change"] == pytest.approx(0.2) and tput["better"] is True
    p99 = next(r for r in rows if r["metric"] == "latency p99 ms")
    assert p99["better"] is None  # equal
