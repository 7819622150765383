"""`persona dedup`: the gate alone over existing persona files, keeping the input ids."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from engine.config import Config
from engine.dedup.gate import DedupGate
from engine.errors import InputError
from engine.ids import content_id
from engine.io import sources
from engine.io.compact import compact_in_place
from engine.io.sinks import ZstdJsonlSink, iter_records
from engine.records import Rejected, now_iso
from engine.stages.base import Candidate


def iter_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for each record of a .jsonl / .jsonl.zst / .parquet persona file."""
    name = str(path)
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(f"input {path}: reading parquet needs pyarrow (pip install pyarrow)") from None
        row = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                row += 1
                yield f"{path}:row {row}", rec
        return
    if not name.endswith((".jsonl", ".jsonl.zst")):
        raise InputError(f"input {path}: persona files must be .jsonl, .jsonl.zst or .parquet")
    try:
        for n, rec in enumerate(iter_records(path), 1):
            if not isinstance(rec, dict):
                raise InputError(f"{path}:{n}: expected a JSON object")
            yield f"{path}:{n}", rec
    except msgspec.DecodeError as e:
        raise InputError(f"{path}: invalid JSON ({e})") from None


def dedup_files(cfg: Config, inputs: list[str], outdir: Path, *, text_field: str = "persona",
                id_field: str = "id", batch: int = 1024) -> Counter[str]:
    """Run the gate over persona files in order; kept records go to personas, the rest to rejected."""
    paths = sources.resolve(inputs)
    outdir.mkdir(parents=True, exist_ok=True)
    gate = DedupGate(cfg.gate)
    counts: Counter[str] = Counter()
    kept = ZstdJsonlSink(outdir / "personas.jsonl.zst")
    rejected = ZstdJsonlSink(outdir / "rejected.jsonl.zst")
    kept.truncate(0)
    rejected.truncate(0)
    pending: list[tuple[Candidate, dict[str, Any]]] = []
    t0 = time.monotonic()

    def flush() -> None:
        decisions = gate.decide([c for c, _ in pending], gate.prepare([c.persona for c, _ in pending]))
        for (cand, rec), dec in zip(pending, decisions, strict=True):
            if dec.accepted:
                kept.write(rec)
                counts["kept"] += 1
            else:
                rejected.write(Rejected(id=str(rec[id_field]), persona=cand.persona, source_id=cand.source_id,
                                        stage=dec.stage, reason=dec.reason, score=dec.score,
                                        duplicate_of=dec.duplicate_of, created_at=now_iso()))
                counts[f"rejected.{dec.stage}"] += 1
                counts[f"reason.{dec.stage}.{dec.reason}"] += 1
        pending.clear()

    for path in paths:
        for _where, rec in iter_objects(path):
            text = rec.get(text_field)
            if not isinstance(text, str) or not text.strip():
                counts["skipped"] += 1
                continue
            rid = rec.get(id_field)
            pid = str(rid) if rid not in (None, "") else content_id("persona", text)
            # the gate stores ids as 128-bit values: hash foreign ids into that space, keep them in records
            gate_id = pid if _is_hex128(pid) else content_id("foreign", pid)
            cand = Candidate(id=gate_id, persona=text, source_id=str(rec.get("source_id", pid)), root_id=None)
            pending.append((cand, {**rec, id_field: pid}))
            counts["read"] += 1
            if len(pending) >= batch:
                flush()
    if pending:
        flush()
    kept.close()
    rejected.close()
    counts["seconds"] = int(time.monotonic() - t0)
    _remap_duplicate_ids(outdir)
    for name in ("personas", "rejected"):
        compact_in_place(outdir / f"{name}.jsonl.zst")  # one frame each, for `datasets` (see engine/io/compact.py)
    return counts


def _is_hex128(s: str) -> bool:
    return len(s) == 32 and all(c in "0123456789abcdef" for c in s)


def _remap_duplicate_ids(outdir: Path) -> None:
    """Rejected records name the kept persona by its input id, not the gate's internal one."""
    mapping = {}
    for rec in iter_records(outdir / "personas.jsonl.zst"):
        pid = str(rec.get("id"))
        mapping[pid if _is_hex128(pid) else content_id("foreign", pid)] = pid
    if all(k == v for k, v in mapping.items()):
        return
    tmp = outdir / "rejected.jsonl.zst.tmp"
    sink = ZstdJsonlSink(tmp)
    sink.truncate(0)
    for rec in iter_records(outdir / "rejected.jsonl.zst"):
        if rec.get("duplicate_of") in mapping:
            rec["duplicate_of"] = mapping[rec["duplicate_of"]]
        sink.write(rec)
    sink.close()
    tmp.replace(outdir / "rejected.jsonl.zst")
