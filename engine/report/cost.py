"""The cost estimate: token usage priced with the config's per-model prices (USD per million)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NO_PRICES = "no prices configured"
#: what a served model name may add to a configured one: a date, a version number, "latest"
_VERSION = re.compile(r"[-@:](?:\d{4}-\d{2}-\d{2}|\d{2,8}|v\d+(?:\.\d+)*|latest)")


def _usd(prompt: int, completion: int, price: Any) -> float:
    return float(prompt * price.prompt + completion * price.completion) / 1e6


def price_of(model: str, prices: Mapping[str, Any]) -> Any:
    """The price of ``model``: its own entry, else the longest configured name it starts with.

    Hosted APIs answer with a dated model name ("gpt-4o-mini-2024-07-18") for the name asked
    for ("gpt-4o-mini"), so a price configured for the latter covers the former; only a date
    or version tail counts ("gpt-4o" does not price "gpt-4o-mini").
    """
    if model in prices:
        return prices[model]
    stems = [name for name in prices if model.startswith(name) and _VERSION.fullmatch(model[len(name):])]
    return prices[max(stems, key=len)] if stems else None


def estimate(usage: Mapping[str, Any], prices: Mapping[str, Any] | None) -> dict[str, Any]:
    """Price the recorded tokens per model, and the tokens no record carries at the recorded mix.

    `usage` is gather()'s "usage" section; `prices` maps a model name to an object with
    `prompt` and `completion` (engine.config.Prices).
    """
    if not prices:
        return {"configured": False, "note": NO_PRICES, "total_usd": None}
    by_model: dict[str, float | None] = {}
    unpriced: list[str] = []
    priced_tokens = [0, 0]
    priced_usd = 0.0
    for model, u in usage.get("by_model", {}).items():
        p, c = int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0))
        price = price_of(model, prices)
        if price is None:
            by_model[model] = None
            unpriced.append(model)
            continue
        usd = _usd(p, c, price)
        by_model[model] = round(usd, 6)
        priced_usd += usd
        priced_tokens[0] += p
        priced_tokens[1] += c
    un = usage.get("unattributed", {})
    up, uc = int(un.get("prompt_tokens", 0)), int(un.get("completion_tokens", 0))
    unattributed_usd: float | None = 0.0
    method = "none"
    if up or uc:
        models = list(usage.get("by_model", {}))
        if len(models) == 1 and price_of(models[0], prices) is not None:
            unattributed_usd, method = _usd(up, uc, price_of(models[0], prices)), f"priced as {models[0]}"
        elif not models and len(prices) == 1:
            (name, price), = prices.items()
            unattributed_usd, method = _usd(up, uc, price), f"priced as {name} (the only priced model)"
        elif priced_tokens[0] or priced_tokens[1]:
            # the mean price per token of the priced records, prompt and completion apart
            priced = {m: (u, price_of(m, prices)) for m, u in usage["by_model"].items()}
            mean_p = sum(_usd(int(u.get("prompt_tokens", 0)), 0, pr) for u, pr in priced.values() if pr is not None)
            mean_c = sum(_usd(0, int(u.get("completion_tokens", 0)), pr)
                         for u, pr in priced.values() if pr is not None)
            unattributed_usd = (up * mean_p / max(priced_tokens[0], 1) + uc * mean_c / max(priced_tokens[1], 1))
            method = "priced at the recorded mix of models"
        else:
            unattributed_usd, method = None, "not priced (no priced model to attribute it to)"
    total = priced_usd + (unattributed_usd or 0.0)
    out: dict[str, Any] = {
        "configured": True,
        "currency": "USD",
        "by_model": by_model,
        "unpriced_models": unpriced,
        "recorded_usd": round(priced_usd, 6),
        "unattributed_usd": None if unattributed_usd is None else round(unattributed_usd, 6),
        "unattributed_method": method,
        "total_usd": round(total, 6),
        "complete": not unpriced and unattributed_usd is not None,
    }
    return out
