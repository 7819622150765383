"""zstd JSONL sinks: complete frames that every reader reads, and exact truncation for resume."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest
import zstandard

from engine.io.compact import frame_count
from engine.io.sinks import ZstdJsonlSink, read_records

ZSTD = shutil.which("zstd")
needs_zstd = pytest.mark.skipif(ZSTD is None, reason="zstd binary not installed")


def _rec(i: int) -> dict:
    return {
        "id": f"{i:032x}",
        "persona": f"persona number {i} – ünïcode ✓",
        "depth": i % 3,
        "parent_id": None,
    }


def _zstd_dc(path: Path) -> list[dict]:
    out = subprocess.run([ZSTD, "-dc", str(path)], check=True, capture_output=True).stdout  # type: ignore[list-item]
    return [json.loads(line) for line in out.decode().splitlines()]


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, list[dict]]:
    path = tmp_path / "personas.jsonl.zst"
    sink = ZstdJsonlSink(path)
    recs = [_rec(i) for i in range(250)]
    for r in recs[:100]:
        sink.write(r)
    sink.flush()
    for r in recs[100:]:
        sink.write(r)
    sink.close()
    return path, recs


@needs_zstd
def test_zstd_cli_reads_all(written: tuple[Path, list[dict]]) -> None:
    path, recs = written
    assert _zstd_dc(path) == recs


def test_python_zstandard_reads_all(written: tuple[Path, list[dict]]) -> None:
    path, recs = written
    with open(path, "rb") as fh:
        data = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    assert [json.loads(line) for line in data.splitlines()] == recs
    assert read_records(path) == recs
    assert frame_count(path) == 3  # the empty frame written at creation, then two flushes


def test_pandas_reads_all(written: tuple[Path, list[dict]]) -> None:
    pd = pytest.importorskip("pandas")
    path, recs = written
    df = pd.read_json(path, lines=True, compression="zstd")
    assert len(df) == len(recs)
    assert list(df["id"]) == [r["id"] for r in recs]
    assert df["persona"].iloc[7] == recs[7]["persona"]


def test_duckdb_reads_all(written: tuple[Path, list[dict]]) -> None:
    duckdb = pytest.importorskip("duckdb")
    path, recs = written
    rows = duckdb.sql(f"SELECT id, persona, depth FROM read_json('{path}') ").fetchall()
    assert rows == [(r["id"], r["persona"], r["depth"]) for r in recs]


def test_structs_are_written_as_objects(tmp_path: Path) -> None:
    class Rec(msgspec.Struct):
        id: str
        n: int

    path = tmp_path / "s.jsonl.zst"
    sink = ZstdJsonlSink(path)
    sink.write(Rec("a", 1))
    sink.write({"id": "b", "n": 2})
    sink.close()
    assert read_records(path) == [{"id": "a", "n": 1}, {"id": "b", "n": 2}]


def test_flush_seals_a_readable_frame_while_open(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl.zst"
    sink = ZstdJsonlSink(path)
    start = sink.offset
    assert start == path.stat().st_size  # the empty frame written at creation
    assert read_records(path) == []
    for i in range(10):
        sink.write(_rec(i))
    assert path.stat().st_size == start  # buffered, nothing more on disk yet
    sink.flush()
    assert sink.offset == path.stat().st_size > start
    assert read_records(path) == [_rec(i) for i in range(10)]  # read while the sink is still open
    sink.write(_rec(10))
    assert read_records(path) == [
        _rec(i) for i in range(10)
    ]  # the buffered record is not half there
    sink.close()
    assert len(read_records(path)) == 11


def test_frames_flush_when_buffer_is_full(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl.zst"
    sink = ZstdJsonlSink(path, frame_bytes=2000)
    start = sink.offset
    for i in range(200):
        sink.write(_rec(i))
    assert path.stat().st_size > start  # flushed without an explicit flush
    assert sink.offset == path.stat().st_size
    sink.close()
    assert frame_count(path) >= 5
    assert read_records(path) == [_rec(i) for i in range(200)]


def test_sync_returns_frame_boundary(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl.zst"
    sink = ZstdJsonlSink(path)
    start = sink.offset
    sink.write(_rec(0))
    off = sink.sync()
    assert off == sink.offset == path.stat().st_size > start
    sink.write(_rec(1))
    sink.close()
    data = path.read_bytes()
    assert len(data) > off
    # the bytes before `start` are the empty frame; [start:off] is exactly one complete frame
    assert zstandard.ZstdDecompressor().decompress(data[:start]) == b""
    obj = zstandard.ZstdDecompressor().decompressobj()
    assert obj.decompress(data[start:off]) == msgspec.json.encode(_rec(0)) + b"\n"
    assert obj.eof and obj.unused_data == b""
    # the whole prefix up to the synced offset is a valid zstd stream holding just record 0
    with zstandard.ZstdDecompressor().stream_reader(data[:off], read_across_frames=True) as r:
        assert r.read() == msgspec.json.encode(_rec(0)) + b"\n"


@needs_zstd
def test_empty_after_truncate_zero_is_valid_zstd(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl.zst"
    sink = ZstdJsonlSink(path)
    sink.truncate(0)
    sink.close()
    assert _zstd_dc(path) == []
    assert read_records(path) == []


@needs_zstd
def test_new_sink_closed_empty_is_valid_zstd(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl.zst"
    sink = ZstdJsonlSink(path)
    assert sink.offset == path.stat().st_size > 0  # the empty frame is on disk at creation
    sink.close()
    assert _zstd_dc(path) == []
    assert read_records(path) == []
    assert frame_count(path) == 1


def test_creation_writes_one_empty_frame_and_offset_counts_it(tmp_path: Path) -> None:
    path = tmp_path / "new.jsonl.zst"
    sink = ZstdJsonlSink(path)
    data = path.read_bytes()
    assert sink.offset == len(data) > 0
    obj = zstandard.ZstdDecompressor().decompressobj()
    assert obj.decompress(data) == b"" and obj.eof and obj.unused_data == b""
    sink.close()
    assert path.read_bytes() == data  # closing with nothing buffered adds nothing


def test_existing_empty_file_gets_the_empty_frame(tmp_path: Path) -> None:
    path = tmp_path / "zero.jsonl.zst"
    path.write_bytes(b"")  # e.g. left by a crash before the first write
    sink = ZstdJsonlSink(path)
    assert sink.offset == path.stat().st_size > 0
    sink.close()
    assert read_records(path) == []
    assert frame_count(path) == 1


def test_truncate_zero_after_records_leaves_only_the_empty_frame(tmp_path: Path) -> None:
    path = tmp_path / "z.jsonl.zst"
    sink = ZstdJsonlSink(path)
    start = sink.offset
    for i in range(5):
        sink.write(_rec(i))
    sink.sync()
    sink.write(_rec(5))
    sink.truncate(0)
    assert sink.offset == start == path.stat().st_size
    assert read_records(path) == []
    sink.write(_rec(7))
    sink.close()
    assert read_records(path) == [_rec(7)]
    assert frame_count(path) == 2


def test_truncate_to_initial_offset_keeps_file_valid(tmp_path: Path) -> None:
    """A checkpoint taken before any record (offset = the empty frame) resumes cleanly."""
    path = tmp_path / "i.jsonl.zst"
    sink = ZstdJsonlSink(path)
    start = sink.offset
    for i in range(3):
        sink.write(_rec(i))
    sink.close()
    sink = ZstdJsonlSink(path)
    assert sink.offset == path.stat().st_size > start
    sink.truncate(start)
    assert sink.offset == start == path.stat().st_size
    assert read_records(path) == []
    sink.write(_rec(9))
    sink.close()
    assert read_records(path) == [_rec(9)]


def test_empty_sink_readable_by_pandas_and_duckdb(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "empty.jsonl.zst"
    sink = ZstdJsonlSink(path)
    sink.truncate(0)
    sink.close()
    assert len(pd.read_json(path, lines=True, compression="zstd")) == 0
    assert duckdb.sql(f"SELECT count(*) FROM read_json('{path}')").fetchall() == [(0,)]


def test_reopen_appends(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.zst"
    s1 = ZstdJsonlSink(path)
    s1.write(_rec(0))
    s1.close()
    size = path.stat().st_size
    s2 = ZstdJsonlSink(path)
    assert s2.offset == size
    s2.write(_rec(1))
    s2.close()
    assert read_records(path) == [_rec(0), _rec(1)]
    assert frame_count(path) == 3  # no second empty frame when reopening a non-empty file


@needs_zstd
def test_truncate_to_frame_boundary_drops_later_records(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.zst"
    sink = ZstdJsonlSink(path)
    for i in range(5):
        sink.write(_rec(i))
    off = sink.sync()
    for i in range(5, 9):
        sink.write(_rec(i))
    sink.flush()
    sink.write(_rec(9))  # still buffered: dropped too
    sink.truncate(off)
    assert path.stat().st_size == off == sink.offset
    sink.write(_rec(100))
    sink.close()
    assert _zstd_dc(path) == [_rec(i) for i in range(5)] + [_rec(100)]


@needs_zstd
def test_partial_last_frame_cut_away_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl.zst"
    sink = ZstdJsonlSink(path)
    for i in range(3):
        sink.write(_rec(i))
    off = sink.sync()
    sink.close()
    # a crash in the middle of writing the next frame: half of it reached the disk
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(
        b"".join(msgspec.json.encode(_rec(i)) + b"\n" for i in range(3, 40))
    )
    with open(path, "ab") as fh:
        fh.write(frame[: len(frame) // 2])
    assert subprocess.run([ZSTD, "-dc", str(path)], capture_output=True).returncode != 0  # type: ignore[list-item]
    # resume: a new sink truncates to the checkpointed offset, then goes on
    sink = ZstdJsonlSink(path)
    sink.truncate(off)
    sink.write(_rec(3))
    sink.close()
    assert _zstd_dc(path) == [_rec(i) for i in range(4)]
    assert read_records(path) == [_rec(i) for i in range(4)]


def test_iter_records_reads_plain_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}')
    assert read_records(path) == [{"a": 1}, {"a": 2}]


def test_iter_records_long_lines_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl.zst"
    sink = ZstdJsonlSink(path, frame_bytes=1 << 16)
    recs = [
        {"id": str(i), "text": "x" * 300_000} for i in range(8)
    ]  # lines span the reader's 1 MiB chunks
    for r in recs:
        sink.write(r)
    sink.close()
    assert read_records(path) == recs
