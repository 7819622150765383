"""The report's PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTS = {"depth": "report_depth.png", "rejects": "report_rejects.png", "diversity": "report_diversity.png"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)  # a reader never sees half a PNG


def depth_plot(report: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    by_depth = report["personas"]["by_depth"]
    gate_depth = report["gate"]["by_depth"]
    depths = sorted({int(d) for d in by_depth} | {int(d) for d in gate_depth})
    acc = [by_depth.get(str(d), 0) for d in depths]
    rej = [gate_depth.get(str(d), {}).get("rejected", 0) for d in depths]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.bar(depths, acc, label="accepted", color="#4c72b0")
    ax.bar(depths, rej, bottom=acc, label="rejected by the gate", color="#dd8452", alpha=0.8)
    ax.set_xlabel("depth (0 = Text-to-Persona, n = n rounds of Persona-to-Persona)")
    ax.set_ylabel("personas")
    ax.set_title("Personas by expansion depth")
    ax.set_xticks(depths or [0])
    ax.legend()
    _save(plt, fig, path)


def rejects_plot(report: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    rows = report["gate"]["by_reason"][:20][::-1]
    fig, ax = plt.subplots(figsize=(6.4, max(2.5, 0.35 * len(rows) + 1.2)))
    if rows:
        ax.barh([f"{r['stage']}: {r['reason']}" for r in rows], [r["count"] for r in rows], color="#c44e52")
        ax.set_xlabel("rejected candidates")
    else:
        ax.text(0.5, 0.5, "no rejections", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    rr = report["gate"]["reject_rate"]
    ax.set_title("Gate rejections by reason" + (f" (reject rate {rr:.1%})" if rr is not None else ""))
    _save(plt, fig, path)


def diversity_plot(report: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    div = report.get("diversity") or {}
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    drawn = False
    low = 0.0
    for task, t in sorted((div.get("tasks") or {}).items()):
        pts = [((b["lo"] + b["hi"]) / 2, b["output_sim"]) for b in t["bins"] if b["pairs"]]
        if pts:
            low = min(low, *(p[1] for p in pts))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=task)
            drawn = True
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(min(0.0, low - 0.05), 1.02)  # cosines may be negative
    ax.set_xlabel("persona similarity (cosine, bin centre)")
    ax.set_ylabel("mean similarity of their outputs (cosine)")
    ax.set_title("Diversity check: output vs persona similarity")
    if drawn:
        ax.legend()
    else:
        ax.text(0.5, 0.5, div.get("reason", "no synthesis outputs"), ha="center", va="center",
                transform=ax.transAxes, wrap=True)
    _save(plt, fig, path)


def write_plots(report: dict[str, Any], outdir: Path) -> dict[str, str]:
    """Write every plot into `outdir`; returns {plot: file name}."""
    for name, fn in (("depth", depth_plot), ("rejects", rejects_plot), ("diversity", diversity_plot)):
        fn(report, Path(outdir) / PLOTS[name])
    return dict(PLOTS)
