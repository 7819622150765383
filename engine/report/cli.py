"""The `persona report` subcommand; engine/cli.py registers it with `add_command`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_command(subparsers: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add `report` to the `persona` subparsers; returns {command: handler}."""
    p = subparsers.add_parser(
        "report", help="counts, reject reasons, lineage, tokens and cost, diversity check, plots",
        description="Summarise an output directory (also one a run is still writing: only complete frames "
                    "count). Prints the summary, writes OUTDIR/report.json and report_*.png next to the data.")
    p.add_argument("outdir", type=Path, metavar="OUTDIR", help="a `persona run` output directory")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the JSON report here (default OUTDIR/report.json)")
    p.add_argument("-c", "--config", type=Path, default=None,
                   help="config file for [prices] and the embedder (default: ./config.toml when present)")
    p.add_argument("--pairs", type=int, default=500, help="persona pairs per task in the diversity check (500)")
    p.add_argument("--pool", type=int, default=600, help="personas sampled per task for those pairs (600)")
    p.add_argument("--bins", type=int, default=5, help="persona-similarity bins over cosine 0..1 (5)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    p.add_argument("--no-diversity", action="store_true", help="skip the diversity check (no embedding)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    return {"report": cmd_report}


def cmd_report(args: argparse.Namespace) -> int:
    from engine import config
    from engine.report import render_text, write_report

    for flag in ("pairs", "pool", "bins"):
        if getattr(args, flag) < 1:
            print(f"error: --{flag} must be >= 1", file=sys.stderr)
            return 2
    path = args.config
    if path is None and Path("config.toml").exists():
        path = Path("config.toml")
    cfg, _ = config.load(path)
    report = write_report(args.outdir, cfg, json_path=args.json, plots=not args.no_plots,
                          diversity=not args.no_diversity, pairs=args.pairs, pool=args.pool, bins=args.bins,
                          seed=args.seed)
    print(render_text(report))
    print(where(report))
    return 0


def where(report: dict[str, Any]) -> str:
    """Where the report's files were written (one line each)."""
    w = report.get("written", {})
    lines = [f"report      {w.get('json')}"]
    if w.get("plots"):
        lines.append(f"plots       {', '.join(w['plots'].values())}")
    if w.get("plots_error"):
        lines.append(f"plots       not written: {w['plots_error']}")
    return "\n".join(lines)
