"""The report as a compact text summary for a terminal."""

from __future__ import annotations

from typing import Any


def _n(x: int | None) -> str:
    return "?" if x is None else f"{x:,}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _tokens(x: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:.1f}{unit}"
    return str(x)


def _usd(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"${x:,.2f}" if x >= 1 else f"${x:.4f}"


def _run(r: dict[str, Any]) -> list[str]:
    run = r.get("run", {})
    partial = [f for f, s in r.get("files", {}).items() if s.get("partial_tail_bytes")]
    lines = [f"run         {run.get('state', 'unknown')}"
             + (f" (unfinished last frame skipped in {', '.join(partial)})" if partial else "")]
    if run.get("inputs_done") is not None:
        lines.append(f"inputs      {_n(run['inputs_done'])} done, {_n(run.get('inputs_with_persona'))} gave a persona")
    if run.get("stages"):
        lines.append("stages      " + " · ".join(
            f"{name} {_n(s['done'])}" + (f" ({_n(s['dead'])} dead)" if s["dead"] else "")
            for name, s in run["stages"].items()) + "  (work items finished)")
    return lines


def _personas(r: dict[str, Any]) -> list[str]:
    p = r["personas"]
    depth = " · ".join(f"d{d} {_n(n)}" for d, n in p["by_depth"].items())
    lines = [f"personas    {_n(p['accepted'])} accepted" + (f" ({depth})" if depth else "")]
    if p["relations"]:
        top = ", ".join(f"{x['relation']} {_n(x['count'])}" for x in p["relations"][:6])
        lines.append(f"  relations {top}" + (f" … ({p['relations_distinct']} distinct)"
                                             if p["relations_distinct"] > 6 else ""))
    return lines


def _gate(r: dict[str, Any]) -> list[str]:
    g = r["gate"]
    if not g["candidates"]:
        return []
    stages = ", ".join(f"{s} {_n(v['count'])} ({_pct(v['rate'])})" for s, v in g["by_stage"].items())
    lines = [f"gate        {_n(g['candidates'])} candidates, {_n(g['rejected'])} rejected ({_pct(g['reject_rate'])})"
             + (f": {stages}" if stages else "")]
    if g["by_reason"]:
        top = ", ".join(f"{x['stage']}/{x['reason']} {_n(x['count'])}" for x in g["by_reason"][:6])
        lines.append(f"  reasons   {top}")
    return lines


def _dead(r: dict[str, Any]) -> list[str]:
    d = r["dead_letters"]
    if not d["total"]:
        return ["dead        none"]
    top = ", ".join(f"{x['stage']} {_n(x['count'])} ({x['reason']})" for x in d["by_reason"][:4])
    return [f"dead        {_n(d['total'])}: {top}"]


def _tasks(r: dict[str, Any]) -> list[str]:
    lines = []
    for i, (task, t) in enumerate(r["tasks"].items()):
        modes = ", ".join(f"{m} {_n(n)}" for m, n in t["by_mode"].items())
        extra = ""
        if "verified" in t:
            extra += f"; verified {_n(t['verified'])} ({_pct(t['verified_share'])})"
        if t.get("dead_letters"):
            extra += f"; {_n(t['dead_letters'])} dead"
        head = "tasks       " if i == 0 else "            "
        lines.append(f"{head}{task:<11} {_n(t['records']):>7}" + (f" ({modes})" if modes else "") + extra)
    return lines or ["tasks       no synthesis outputs"]


def _usage(r: dict[str, Any]) -> list[str]:
    u, cost = r["usage"], r.get("cost") or {}
    rec, req = u["recorded"], u["requests"]
    lines = [f"tokens      {_tokens(req['prompt_tokens'])} prompt + {_tokens(req['completion_tokens'])} completion "
             f"sent; {_tokens(rec['prompt_tokens'])} + {_tokens(rec['completion_tokens'])} carried by records"]
    for model, m in u["by_model"].items():
        price = (cost.get("by_model") or {}).get(model)
        lines.append(f"  {model[:28]:<28} {_tokens(m['prompt_tokens']):>7} + {_tokens(m['completion_tokens']):>7}"
                     + (f"  {_usd(price)}" if cost.get("configured") else ""))
    if not cost.get("configured"):
        lines.append("cost        no prices configured ([prices.<model>] prompt/completion USD per million tokens)")
    else:
        note = []
        if cost["unpriced_models"]:
            note.append(f"no price for {', '.join(cost['unpriced_models'])}")
        if cost.get("unattributed_usd"):
            note.append(f"{_usd(cost['unattributed_usd'])} of it for tokens no record carries, "
                        f"{cost['unattributed_method']}")
        lines.append(f"cost        ~{_usd(cost['total_usd'])}" + (f" ({'; '.join(note)})" if note else ""))
    return lines


def _diversity(r: dict[str, Any]) -> list[str]:
    d = r.get("diversity") or {}
    if d.get("status") != "ok":
        return [f"diversity   {d.get('status', 'skipped')}: {d.get('reason', 'not computed')}"]
    tasks = d["tasks"]
    any_bins: list[dict[str, Any]] = next((t["bins"] for t in tasks.values() if t["bins"]), [])
    head = "".join(f"{b['lo']:.1f}-{b['hi']:.1f}".rjust(13) for b in any_bins)
    lines = ["diversity   mean output cosine (pairs) by persona-cosine bin",
             f"  {'task':<11}{head}  pearson"]
    for task, t in tasks.items():
        cells = "".join((f"{b['output_sim']:.2f} ({b['pairs']})" if b["pairs"] else "-").rjust(13) for b in t["bins"])
        pr = "n/a" if t["pearson"] is None else f"{t['pearson']:+.2f}"
        lines.append(f"  {task:<11}{cells}  {pr:>7}")
    grows = [t for t, v in tasks.items() if v["pearson"] is not None and v["pearson"] > 0]
    judged = [t for t, v in tasks.items() if v["pearson"] is not None]
    if judged:
        lines.append(f"  output similarity grows with persona similarity in {len(grows)} of {len(judged)} tasks")
    return lines


def render_text(report: dict[str, Any]) -> str:
    """A compact human summary of a report from `build_report`/`write_report`."""
    lines: list[str] = []
    for part in (_run, _personas, _gate, _dead, _tasks, _usage, _diversity):
        lines.extend(part(report))
    return "\n".join(lines)
