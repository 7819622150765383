"""report.json, the PNG plots, the text summary and the `persona report` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from engine.errors import PersonaError
from engine.report import render_text, write_report
from engine.report.cli import add_command

from .conftest import build
from .test_gather import _append_half_frame

PNG = b"\x89PNG\r\n\x1a\n"


def test_write_report_json_and_plots(outdir: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    report = write_report(outdir, None, embedder=embedder)
    doc = json.loads((outdir / "report.json").read_text())
    assert doc["personas"]["by_depth"] == {"0": 4, "1": 7, "2": 1}
    assert doc["diversity"]["status"] == "ok" and doc == json.loads(json.dumps(report))
    for name in ("report_depth.png", "report_rejects.png", "report_diversity.png"):
        data = (outdir / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    assert set(doc["written"]["plots"]) == {"depth", "rejects", "diversity"}
    assert not list(outdir.glob("*.tmp"))
    text = render_text(report)
    for line in ("personas    12 accepted (d0 4 · d1 7 · d2 1)", "8 rejected (40.0%)", "verified 9 (75.0%)",
                 "no prices configured", "0.0-0.2", "output similarity grows"):
        assert line in text, line


def test_partial_dir_without_synthesis(tmp_path: Path) -> None:
    out = build(tmp_path / "out", tasks=False, checkpoint=False)
    (out / "math.jsonl.zst").write_bytes(b"")
    _append_half_frame(out / "math.jsonl.zst", 2000)  # the first frame of a task file, half written
    report = write_report(out, None)
    assert report["tasks"]["math"]["records"] == 0
    assert report["diversity"]["status"] == "skipped"
    assert (out / "report.json").exists() and (out / "report_diversity.png").read_bytes().startswith(PNG)
    text = render_text(report)
    assert "diversity   skipped" in text and "unfinished last frame skipped in math" in text


def test_missing_outdir(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="no such output directory"):
        write_report(tmp_path / "nope", None)


def test_cli(outdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[prices.m-big]\nprompt = 10.0\ncompletion = 30.0\n')
    parser = argparse.ArgumentParser(prog="persona")
    handlers = add_command(parser.add_subparsers(dest="command"))
    assert list(handlers) == ["report"]
    target = tmp_path / "elsewhere" / "r.json"
    args = parser.parse_args(["report", str(outdir), "--json", str(target), "-c", str(cfg), "--no-diversity"])
    assert handlers[args.command](args) == 0
    out = capsys.readouterr().out
    assert f"report      {target}" in out and "report_depth.png" in out
    assert "no price for m-small" in out
    doc = json.loads(target.read_text())
    assert doc["cost"]["by_model"]["m-big"] == pytest.approx(0.03)
    assert not (outdir / "report.json").exists()
    with pytest.raises(SystemExit):
        parser.parse_args(["report"])


def test_a_failing_embedder_leaves_the_rest(outdir: Path) -> None:
    class Broken:
        def embed(self, texts: list[str]) -> None:
            raise RuntimeError("out of memory")

    report = write_report(outdir, None, embedder=Broken())
    assert report["diversity"] == {"status": "failed", "reason": "RuntimeError: out of memory"}
    assert "diversity   failed: RuntimeError: out of memory" in render_text(report)
    assert report["personas"]["accepted"] == 12
