"""`persona report`: counts, reject rates, lineage, usage and cost, and the diversity check.

`write_report(outdir, cfg)` reads an output directory (a finished run or one still being
written: only complete zstd frames count), writes OUTDIR/report.json and the PNG plots
next to the data, and returns the report; `render_text(report)` is its terminal summary.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from engine.report.cost import estimate
from engine.report.gather import gather
from engine.report.render import render_text

__all__ = ["REPORT_VERSION", "build_report", "render_text", "write_report"]

REPORT_VERSION = 1


def build_report(outdir: Path, cfg: Any = None, *, embedder: Any = None, diversity: bool = True,
                 pairs: int = 500, pool: int = 600, bins: int = 5, seed: int = 0) -> dict[str, Any]:
    """The report of an output directory as plain data (what report.json holds)."""
    outdir = Path(outdir)
    report: dict[str, Any] = {"version": REPORT_VERSION, "outdir": str(outdir),
                              "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    report.update(gather(outdir))
    report["cost"] = estimate(report["usage"], getattr(cfg, "prices", None))
    if diversity:
        from engine.report.diversity import diversity as check

        try:
            report["diversity"] = check(outdir, embedder, cfg=cfg, pairs=pairs, pool=pool, bins=bins, seed=seed)
        except Exception as e:  # noqa: BLE001  (the counts stand without it; a run's end must not fail here)
            report["diversity"] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
    else:
        report["diversity"] = {"status": "skipped", "reason": "not asked for"}
    return report


def write_report(outdir: Path, cfg: Any = None, *, json_path: Path | None = None, plots: bool = True,
                 **options: Any) -> dict[str, Any]:
    """Build the report, write report.json (or `json_path`) and the PNG plots; returns the report."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        from engine.errors import PersonaError

        raise PersonaError(f"{outdir}: no such output directory")
    report = build_report(outdir, cfg, **options)
    target = Path(json_path) if json_path is not None else outdir / "report.json"
    report["written"] = {"json": str(target), "plots": {}}
    if plots:
        try:
            from engine.report.plots import write_plots

            report["written"]["plots"] = {k: str(outdir / v) for k, v in write_plots(report, outdir).items()}
        except Exception as e:  # noqa: BLE001  (a missing plot must not lose the report)
            report["written"]["plots_error"] = f"{type(e).__name__}: {e}"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return report
