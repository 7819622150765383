"""Input streams: .txt (one text per line), .jsonl, .jsonl.zst and .parquet, resumable.

A `Cursor` says how far the stream has been consumed; for plain files it holds the byte
offset, so a resume seeks instead of re-reading; compressed and parquet files skip records.
Memory stays bounded whatever the input's size: records are read one at a time.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import zstandard

from engine.errors import InputError
from engine.ids import content_id

SUFFIXES = (".txt", ".txt.zst", ".jsonl", ".jsonl.zst", ".parquet")


class Cursor(msgspec.Struct, frozen=True):
    """Position in a list of inputs: file index, records consumed in it, byte offset."""

    file: int = 0
    record: int = 0
    offset: int = 0
    consumed: int = 0  # records consumed over all files


class SourceRecord(NamedTuple):
    """One input text with its id and where it came from."""

    source_id: str
    text: str
    where: str  # "file:line"


class BadRecord(NamedTuple):
    """An input line that cannot be used; it goes to the dead letter with the reason."""

    source_id: str
    reason: str
    raw: str
    where: str


def demo_corpus() -> Path:
    """The demo corpus that ships with the package."""
    return Path(str(resources.files("engine") / "data" / "demo_corpus.txt"))


def resolve(paths: list[str]) -> list[Path]:
    """Check that each input exists, is readable and of a known kind; "demo" is the demo corpus."""
    out = []
    for p in paths:
        path = demo_corpus() if p == "demo" else Path(p)
        if not path.exists():
            raise InputError(f"input not found: {path}")
        if path.is_dir():
            raise InputError(f"input is a directory, not a file: {path}")
        if not str(path).endswith(SUFFIXES):
            raise InputError(f"input {path}: unknown kind; use .txt, .txt.zst, .jsonl, .jsonl.zst or .parquet")
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as e:
            raise InputError(f"input {path} cannot be read: {e.strerror}") from None
        out.append(path)
    return out


class InputStream:
    """Iterates the inputs from a cursor; `cursor` is updated as each record is taken."""

    def __init__(self, paths: list[Path], *, text_field: str = "text", id_field: str = "id",
                 max_chars: int = 4000, cursor: Cursor | None = None) -> None:
        self.paths = paths
        self.text_field = text_field
        self.id_field = id_field
        self.max_chars = max_chars
        self.cursor = cursor or Cursor()
        self._json = msgspec.json.Decoder()

    def __iter__(self) -> Iterator[SourceRecord | BadRecord]:
        while self.cursor.file < len(self.paths):
            path = self.paths[self.cursor.file]
            yield from self._file(path)
            self.cursor = Cursor(file=self.cursor.file + 1, consumed=self.cursor.consumed)

    def _file(self, path: Path) -> Iterator[SourceRecord | BadRecord]:
        name = str(path)
        try:
            if name.endswith(".parquet"):
                yield from self._parquet(path)
            elif name.endswith(".zst"):
                yield from self._compressed(path)
            else:
                yield from self._plain(path)
        except OSError as e:
            raise InputError(f"input {path} cannot be read: {e}") from None
        except zstandard.ZstdError as e:
            raise InputError(f"input {path} is not valid zstd (record {self.cursor.record + 1}): {e}") from None

    def _take(self, *, offset: int) -> None:
        c = self.cursor
        self.cursor = Cursor(file=c.file, record=c.record + 1, offset=offset, consumed=c.consumed + 1)

    def _plain(self, path: Path) -> Iterator[SourceRecord | BadRecord]:
        is_txt = path.suffix == ".txt"
        with open(path, "rb") as fh:
            fh.seek(self.cursor.offset)
            line_no = self.cursor.record
            while raw := fh.readline():
                offset = fh.tell()
                line_no += 1
                rec = self._parse(raw, is_txt, f"{path}:{line_no}")
                self._take(offset=offset)
                if rec is not None:
                    yield rec

    def _compressed(self, path: Path) -> Iterator[SourceRecord | BadRecord]:
        skip = self.cursor.record
        is_txt = str(path).endswith(".txt.zst")
        with open(path, "rb") as fh:
            reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
            text = io.BufferedReader(reader, buffer_size=1 << 20)
            for line_no, raw in enumerate(text, 1):
                if line_no <= skip:
                    continue
                rec = self._parse(raw, is_txt, f"{path}:{line_no}")
                self._take(offset=0)
                if rec is not None:
                    yield rec

    def _parquet(self, path: Path) -> Iterator[SourceRecord | BadRecord]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(f"input {path}: reading parquet needs pyarrow (pip install pyarrow)") from None
        pf = pq.ParquetFile(path)
        cols = [c for c in (self.text_field, self.id_field) if c in pf.schema_arrow.names]
        if self.text_field not in cols:
            raise InputError(f"input {path}: no column {self.text_field!r} (use --text-field)")
        skip = self.cursor.record
        row = 0
        for batch in pf.iter_batches(columns=cols, batch_size=4096):
            for rec in batch.to_pylist():
                row += 1
                if row <= skip:
                    continue
                out = self._fields(rec, f"{path}:row {row}", repr(rec)[:500])
                self._take(offset=0)
                yield out

    def _parse(self, raw: bytes, is_txt: bool, where: str) -> SourceRecord | BadRecord | None:
        if is_txt:
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                return None
            text = text[: self.max_chars]
            return SourceRecord(content_id("text", text), text, where)
        if not raw.strip():
            return None
        try:
            obj = self._json.decode(raw)
        except msgspec.DecodeError as e:
            raw_s = raw.decode("utf-8", "replace")[:2000]
            return BadRecord(content_id("bad", where, raw_s), f"invalid JSON at {where}: {e}", raw_s, where)
        if not isinstance(obj, dict):
            raw_s = raw.decode("utf-8", "replace")[:2000]
            return BadRecord(content_id("bad", where, raw_s), f"{where}: expected a JSON object", raw_s, where)
        return self._fields(obj, where, raw.decode("utf-8", "replace")[:2000])

    def _fields(self, obj: dict[str, Any], where: str, raw: str) -> SourceRecord | BadRecord:
        text = obj.get(self.text_field)
        if not isinstance(text, str) or not text.strip():
            return BadRecord(content_id("bad", where, raw), f"{where}: field {self.text_field!r} missing or empty",
                             raw, where)
        text = text.strip()[: self.max_chars]
        rid = obj.get(self.id_field)
        source_id = str(rid) if rid not in (None, "") else content_id("text", text)
        return SourceRecord(source_id, text, where)


def count_records(paths: list[Path]) -> int:
    """Count input records (non-blank lines / rows); run in a thread for progress totals."""
    total = 0
    for path in paths:
        name = str(path)
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            total += pq.ParquetFile(path).metadata.num_rows
            continue
        with open(path, "rb") as fh:
            raw: Any = (zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
                        if name.endswith(".zst") else fh)
            total += sum(1 for line in io.BufferedReader(raw, buffer_size=1 << 20) if line.strip())
    return total
