"""Show benchmark results: a table per run, a comparison table, a JSON file and a PNG plot."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import msgspec

from engine.bench import stats

_HEADER = ("{:>8} {:>6} {:>5} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}".format(
    "step", "done", "err", "req/s", "in tok/s", "out tok/s", "p50 ms", "p90 ms", "p99 ms", "TTFT99", "ITL99"))


def _ms(d: dict[str, float] | None, key: str) -> str:
    return "-" if d is None else f"{d[key]:.0f}" if d[key] >= 100 else f"{d[key]:.1f}"


def _label(step: dict[str, Any]) -> str:
    v = step["value"]
    if step["mode"] == "rate":
        return "inf/s" if math.isinf(v) else f"{v:g}/s"
    return f"c={int(v)}"


def step_line(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    return "{:>8} {:>6} {:>5} {:>8.2f} {:>9.1f} {:>9.1f} {:>8} {:>8} {:>8} {:>8} {:>8}".format(
        _label(s), s["completed"], s["errors"], s["req_per_s"], s["input_tok_per_s"], s["output_tok_per_s"],
        _ms(lat, "p50"), _ms(lat, "p90"), _ms(lat, "p99"), _ms(s["ttft_ms"], "p99"), _ms(s["itl_ms"], "p99"))


def header() -> str:
    return _HEADER


def saturation_line(sat: dict[str, Any] | None) -> str:
    if sat is None:
        return "saturation: no steps"
    what = "concurrency" if sat["mode"] == "concurrency" else "rate"
    unit = "output tok/s" if sat["metric"] == "output_tok_per_s" else "req/s"
    value = int(sat["value"]) if sat["mode"] == "concurrency" else sat["value"]
    if not sat["saturated"]:
        return (f"saturation: not reached; throughput still within 5% of its best ({sat['max_throughput']:.1f} {unit}) "
                f"only at the last step ({what} {value}): try higher values")
    return (f"saturation: {what} {value} reaches {sat['throughput']:.1f} {unit}, within 5% of the best "
            f"({sat['max_throughput']:.1f}); more adds latency, not throughput")


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    from engine.errors import InputError

    try:
        doc = msgspec.json.decode(path.read_bytes())
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    except msgspec.DecodeError as e:
        raise InputError(f"{path}: not a benchmark JSON file: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        raise InputError(f"{path}: not a benchmark JSON file (no 'steps' list); write one with persona bench --json")
    return doc


def plot(doc: dict[str, Any], path: Path) -> None:
    """Throughput and p99 latency against the swept variable, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(doc["steps"], key=lambda s: s["value"])
    metric = stats.throughput_metric(steps)
    xs = [s["value"] for s in steps]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    ax.plot(xs, [s[metric] for s in steps], "o-", color="tab:blue", label="throughput")
    ax.set_xlabel("concurrency" if steps and steps[0]["mode"] == "concurrency" else "request rate (req/s)")
    ax.set_ylabel("output tokens/s" if metric == "output_tok_per_s" else "requests/s", color="tab:blue")
    if len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(xs, [(s["latency_ms"] or {}).get("p99", float("nan")) for s in steps], "s--", color="tab:red",
             label="p99 latency")
    ax2.set_ylabel("p99 latency (ms)", color="tab:red")
    ax2.set_ylim(bottom=0)
    sat = doc.get("saturation")
    if sat and sat.get("saturated"):
        ax.axvline(sat["value"], color="gray", linestyle=":", label=f"saturates at {sat['value']:g}")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    cfg = doc.get("config", {})
    ax.set_title(f"{cfg.get('model', '')} @ {cfg.get('base_url', '')}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def compare_lines(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> list[str]:
    """The comparison as text: config differences, per-step metric changes, saturation points."""
    lines = [f"A = {name_a}", f"B = {name_b}"]
    ca, cb = a.get("config", {}), b.get("config", {})
    for key in sorted(set(ca) | set(cb)):
        if ca.get(key) != cb.get(key):
            lines.append(f"  config {key}: {ca.get(key)!r} -> {cb.get(key)!r}")
    rows = stats.compare(a, b)
    if not rows:
        lines.append("no step appears in both files")
    else:
        lines.append("{:>8} {:<16} {:>12} {:>12} {:>9}".format("step", "metric", "A", "B", "change"))
        for r in rows:
            change = "n/a" if math.isinf(r["change"]) else f"{r['change'] * 100:+.1f}%"
            mark = "" if r["better"] is None else ("  better" if r["better"] else "  worse")
            lines.append("{:>8} {:<16} {:>12.2f} {:>12.2f} {:>9}{}".format(
                _label(r), r["metric"], r["a"], r["b"], change, mark))
    only_a, only_b = stats.unmatched(a, b)
    if only_a or only_b:
        lines.append(f"steps only in A: {only_a or '-'}; only in B: {only_b or '-'}")
    for name, doc in (("A", a), ("B", b)):
        lines.append(f"{name} {saturation_line(doc.get('saturation'))}")
    return lines
