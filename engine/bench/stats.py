"""Pure summaries of benchmark steps: rates, percentiles, the saturation point, and A/B comparison.

Definitions follow vLLM's serving benchmark: throughput counts successful requests over the
step's wall time; TTFT is the time to the first content chunk; ITL is the gap between
consecutive content chunks; TPOT is (latency - TTFT) / (output tokens - 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.bench.request import Result

PERCENTILES = (50, 90, 99)
SATURATION_TOLERANCE = 0.05  # the first step within 5% of the best throughput is where it saturates


def distribution(values_s: Sequence[float]) -> dict[str, float] | None:
    """Mean and p50/p90/p99 in milliseconds (None when there are no values)."""
    if not values_s:
        return None
    a = np.asarray(values_s, dtype=float) * 1000.0
    out = {"mean": float(a.mean())}
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(a, p))
    return out


def summarise(results: Sequence[Result], duration: float, mode: str, value: float) -> dict[str, Any]:
    """One step's figures from its requests."""
    ok = [r for r in results if r.ok]
    dur = max(duration, 1e-9)
    prompt = sum(r.prompt_tokens for r in ok)
    completion = sum(r.completion_tokens for r in ok)
    tpots = [(r.latency - r.ttft) / (r.completion_tokens - 1) for r in ok
             if r.ttft is not None and r.completion_tokens > 1]
    errors = Counter(r.error for r in results if not r.ok)
    return {
        "mode": mode,
        "value": value,
        "requests": len(results),
        "completed": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common()),
        "duration_s": duration,
        "req_per_s": len(ok) / dur,
        "input_tok_per_s": prompt / dur,
        "output_tok_per_s": completion / dur,
        "total_tok_per_s": (prompt + completion) / dur,
        "input_tokens": prompt,
        "output_tokens": completion,
        "usage_estimated": sum(1 for r in ok if not r.usage_reported),
        "latency_ms": distribution([r.latency for r in ok]),
        "ttft_ms": distribution([r.ttft for r in ok if r.ttft is not None]),
        "itl_ms": distribution([x for r in ok for x in r.itl]),
        "tpot_ms": distribution(tpots),
    }


def throughput_metric(steps: Sequence[dict[str, Any]]) -> str:
    """Output tokens/s when the steps produced tokens, else requests/s."""
    return "output_tok_per_s" if any(s["output_tokens"] for s in steps) else "req_per_s"


def saturation(steps: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Where throughput stops growing: the first step (in sweep order) within 5% of the best.

    `saturated` is False when that step is the last one: throughput may still be rising.
    """
    if not steps:
        return None
    metric = throughput_metric(steps)
    ordered = sorted(steps, key=lambda s: s["value"])
    best = max(s[metric] for s in ordered)
    first = next(s for s in ordered if s[metric] >= (1 - SATURATION_TOLERANCE) * best)
    return {"metric": metric, "mode": first["mode"], "value": first["value"], "throughput": first[metric],
            "max_throughput": best, "saturated": first is not ordered[-1]}


# ---- comparison ---------------------------------------------------------------------------------
_COMPARED: tuple[tuple[str, str, bool], ...] = (  # (label, path, higher is better)
    ("req/s", "req_per_s", True),
    ("output tok/s", "output_tok_per_s", True),
    ("input tok/s", "input_tok_per_s", True),
    ("latency p50 ms", "latency_ms.p50", False),
    ("latency p99 ms", "latency_ms.p99", False),
    ("TTFT p99 ms", "ttft_ms.p99", False),
    ("ITL p99 ms", "itl_ms.p99", False),
    ("errors", "errors", False),
)


def _get(step: dict[str, Any], path: str) -> float | None:
    cur: Any = step
    for part in path.split("."):
        if not isinstance(cur, dict) or cur.get(part) is None:
            return None
        cur = cur[part]
    return float(cur)


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (step, metric, A, B, change) for the steps both runs measured."""
    rows: list[dict[str, Any]] = []
    b_steps = {(s["mode"], s["value"]): s for s in b.get("steps", [])}
    for sa in sorted(a.get("steps", []), key=lambda s: (s["mode"], s["value"])):
        sb = b_steps.get((sa["mode"], sa["value"]))
        if sb is None:
            continue
        for label, path, higher in _COMPARED:
            va, vb = _get(sa, path), _get(sb, path)
            if va is None or vb is None or (path == "errors" and va == vb == 0):
                continue
            change = (vb - va) / va if va else (0.0 if vb == va else float("inf"))
            better = None if vb == va else (vb > va) == higher
            rows.append({"mode": sa["mode"], "value": sa["value"], "metric": label, "a": va, "b": vb,
                         "change": change, "better": better})
    return rows


def unmatched(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Step values only A has, and only B has."""
    ka = {(s["mode"], s["value"]) for s in a.get("steps", [])}
    kb = {(s["mode"], s["value"]) for s in b.get("steps", [])}
    return sorted(v for _, v in ka - kb), sorted(v for _, v in kb - ka)
