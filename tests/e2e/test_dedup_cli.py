"""`persona dedup` over existing persona files: kept and rejected, input ids kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import zstandard

from engine.io.sinks import read_records

PERSONAS = [
    ("p1", "A beekeeper who sells heather honey at a farmers market in the Scottish borders."),
    ("p2", "a beekeeper, who sells heather honey at a farmers market in the scottish borders"),  # exact
    ("p3", "A tax accountant who advises small breweries on excise duty and VAT returns."),
    ("p4", "A tax accountant who advises small breweries on excise duty and VAT returns today."),  # minhash
    ("p5", "An accountant who advises small breweries on their excise duty and VAT returns."),  # semantic
    ("p6", "A glaciologist who measures ice loss on Greenland outlet glaciers with drones."),
    ("p7", "Sorry"),  # quality
]


def _write(path: Path, rows: list[tuple[str, str]], compress: bool) -> None:
    data = "".join(json.dumps({"id": i, "persona": t, "extra": len(t)}) + "\n" for i, t in rows).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if compress else data)


def test_dedup_keeps_first_and_input_ids(tmp_path: Path) -> None:
    _write(tmp_path / "a.jsonl", PERSONAS[:4], False)
    _write(tmp_path / "b.jsonl.zst", PERSONAS[4:], True)
    r = subprocess.run([sys.executable, "-m", "engine", "dedup", "a.jsonl", "b.jsonl.zst", "-o", "out"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    kept = read_records(tmp_path / "out" / "personas.jsonl.zst")
    rejected = {x["id"]: x for x in read_records(tmp_path / "out" / "rejected.jsonl.zst")}
    assert [k["id"] for k in kept] == ["p1", "p3", "p6"]
    assert kept[0]["extra"] == len(PERSONAS[0][1])  # the input's own fields pass through
    assert (rejected["p2"]["stage"], rejected["p2"]["duplicate_of"]) == ("exact", "p1")
    assert (rejected["p4"]["stage"], rejected["p4"]["duplicate_of"]) == ("minhash", "p3")
    assert (rejected["p5"]["stage"], rejected["p5"]["duplicate_of"]) == ("semantic", "p3")
    assert rejected["p7"]["stage"] == "quality"
    assert "kept 3" in r.stdout


def test_dedup_parquet_with_chosen_text_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"pid": [i for i, _ in PERSONAS[:3]], "text": [t for _, t in PERSONAS[:3]]})
    pq.write_table(table, tmp_path / "p.parquet")
    r = subprocess.run([sys.executable, "-m", "engine", "dedup", "p.parquet", "-o", "out", "--text-field", "text",
                        "--id-field", "pid"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [k["pid"] for k in read_records(tmp_path / "out" / "personas.jsonl.zst")] == ["p1", "p3"]
