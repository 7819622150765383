"""Input streams: every format, bad lines named by file:line, exact resume, bounded memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from engine.errors import InputError
from engine.ids import content_id
from engine.io.sources import BadRecord, Cursor, InputStream, SourceRecord, demo_corpus, resolve


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    if path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    return path


def _texts(recs: list) -> list[str]:
    return [r.text for r in recs]


# ---- formats ------------------------------------------------------------------------------------


def test_txt_skips_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "in.txt"
    p.write_text("first text\n\n   \nsecond text  \nthird\n")
    recs = list(InputStream([p]))
    assert all(type(r) is SourceRecord for r in recs)
    assert _texts(recs) == ["first text", "second text", "third"]
    assert [r.where for r in recs] == [f"{p}:1", f"{p}:4", f"{p}:5"]
    assert recs[0].source_id == content_id("text", "first text")


def test_txt_without_final_newline_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "in.txt"
    p.write_bytes(b"one\r\ntwo")
    assert _texts(list(InputStream([p]))) == ["one", "two"]


def test_max_chars_cuts_long_texts(tmp_path: Path) -> None:
    p = tmp_path / "in.txt"
    p.write_text("x" * 50 + "\n")
    assert _texts(list(InputStream([p], max_chars=10))) == ["x" * 10]


@pytest.mark.parametrize("name", ["in.jsonl", "in.jsonl.zst"])
def test_jsonl_fields_and_content_hash_ids(tmp_path: Path, name: str) -> None:
    p = _write_jsonl(
        tmp_path / name,
        [
            {"text": "alpha", "id": "A1"},
            {"text": "beta"},
            {"text": "gamma", "id": 42},
            {"text": "delta", "id": ""},
            "",
        ],
    )
    recs = list(InputStream([p]))
    assert all(type(r) is SourceRecord for r in recs)
    assert [(r.source_id, r.text) for r in recs] == [
        ("A1", "alpha"),
        (content_id("text", "beta"), "beta"),
        ("42", "gamma"),
        (content_id("text", "delta"), "delta"),
    ]
    assert recs[1].where == f"{p}:2"


def test_jsonl_custom_fields(tmp_path: Path) -> None:
    p = _write_jsonl(tmp_path / "in.jsonl", [{"body": "hello", "uid": "u1", "text": "not this"}])
    (rec,) = InputStream([p], text_field="body", id_field="uid")
    assert (rec.source_id, rec.text) == ("u1", "hello")


def test_same_text_same_id_across_formats(tmp_path: Path) -> None:
    t = tmp_path / "a.txt"
    t.write_text("the same text\n")
    j = _write_jsonl(tmp_path / "b.jsonl", [{"text": "the same text"}])
    (a,) = InputStream([t])
    (b,) = InputStream([j])
    assert a.source_id == b.source_id


@pytest.mark.parametrize("name", ["in.jsonl", "in.jsonl.zst"])
def test_bad_lines_are_bad_records_naming_file_and_line(tmp_path: Path, name: str) -> None:
    p = _write_jsonl(
        tmp_path / name,
        [
            {"text": "ok"},
            '{"text": "broken',
            {"id": "x"},
            {"text": "   "},
            "[1, 2]",
            {"text": "fine"},
        ],
    )
    recs = list(InputStream([p]))
    assert [type(r).__name__ for r in recs] == [
        "SourceRecord",
        "BadRecord",
        "BadRecord",
        "BadRecord",
        "BadRecord",
        "SourceRecord",
    ]
    bad = [r for r in recs if isinstance(r, BadRecord)]
    assert [b.where for b in bad] == [f"{p}:2", f"{p}:3", f"{p}:4", f"{p}:5"]
    for b in bad:
        assert b.where in b.reason
    assert "invalid JSON" in bad[0].reason
    assert bad[0].raw.startswith('{"text": "broken')
    assert "'text'" in bad[1].reason
    assert len({b.source_id for b in bad}) == 4  # distinct, stable ids for the dead letter
    again = [r for r in InputStream([p]) if isinstance(r, BadRecord)]
    assert [b.source_id for b in again] == [b.source_id for b in bad]


def test_parquet(tmp_path: Path) -> None:
    p = _write_parquet(
        tmp_path / "in.parquet",
        [{"text": "alpha", "id": "A"}, {"text": "beta", "id": None}, {"text": None, "id": "C"}],
    )
    recs = list(InputStream([p]))
    assert isinstance(recs[0], SourceRecord) and (recs[0].source_id, recs[0].text) == ("A", "alpha")
    assert isinstance(recs[1], SourceRecord) and recs[1].source_id == content_id("text", "beta")
    assert isinstance(recs[2], BadRecord) and str(p) in recs[2].where and "3" in recs[2].where


def test_parquet_without_text_column(tmp_path: Path) -> None:
    p = _write_parquet(tmp_path / "in.parquet", [{"body": "x"}])
    with pytest.raises(InputError, match="body|text"):
        list(InputStream([p]))


def test_corrupt_zstd_is_an_input_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl.zst"
    p.write_bytes(b"this is not zstd at all" * 10)
    with pytest.raises(InputError, match="bad.jsonl.zst"):
        list(InputStream([p]))


def test_demo_corpus_ships() -> None:
    recs = list(InputStream(resolve(["demo"])))
    assert len(recs) >= 20
    assert all(isinstance(r, SourceRecord) for r in recs)
    assert resolve(["demo"]) == [demo_corpus()]


# ---- resume from a cursor -----------------------------------------------------------------------


def _make_inputs(tmp_path: Path) -> dict[str, Path]:
    rows = [{"text": f"text {i}", "id": f"r{i}"} for i in range(30)]
    rows_with_gaps: list[object] = []
    for i, r in enumerate(rows):
        rows_with_gaps.append(r)
        if i % 7 == 3:
            rows_with_gaps.append("")  # blank lines in between
        if i == 11:
            rows_with_gaps.append("{bad json")
    t = tmp_path / "in.txt"
    t.write_text("".join(f"text {i}\n" + ("\n" if i % 5 == 0 else "") for i in range(30)))
    tz = tmp_path / "in.txt.zst"
    tz.write_bytes(zstandard.ZstdCompressor().compress(t.read_bytes()))
    return {
        "txt": t,
        "txt.zst": tz,
        "jsonl": _write_jsonl(tmp_path / "in.jsonl", rows_with_gaps),
        "jsonl.zst": _write_jsonl(tmp_path / "in.jsonl.zst", rows_with_gaps),
        "parquet": _write_parquet(tmp_path / "in.parquet", rows),
    }


def _key(r: SourceRecord | BadRecord) -> tuple[str, str]:
    return (type(r).__name__, r.where)


def _resume_everywhere(paths: list[Path]) -> None:
    full = [_key(r) for r in InputStream(paths)]
    assert len(full) > 10
    for k in range(len(full) + 1):
        s = InputStream(paths)
        it = iter(s)
        taken = [_key(next(it)) for _ in range(k)]
        cursor = s.cursor
        # a cursor survives a checkpoint round trip
        import msgspec

        cursor = msgspec.json.decode(msgspec.json.encode(cursor), type=Cursor)
        rest_stream = InputStream(paths, cursor=cursor)
        rest = [_key(r) for r in rest_stream]
        assert taken + rest == full, k
        assert rest_stream.cursor.consumed >= len(full)


@pytest.mark.parametrize("fmt", ["txt", "txt.zst", "jsonl", "jsonl.zst", "parquet"])
def test_resume_continues_exactly_after_last_taken(tmp_path: Path, fmt: str) -> None:
    _resume_everywhere([_make_inputs(tmp_path)[fmt]])


def test_resume_across_file_boundaries(tmp_path: Path) -> None:
    ins = _make_inputs(tmp_path)
    _resume_everywhere([ins["txt"], ins["jsonl.zst"], ins["txt.zst"], ins["parquet"], ins["jsonl"]])


def test_cursor_counts_consumed_across_files(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text("1\n2\n3\n")
    b = tmp_path / "b.txt"
    b.write_text("4\n5\n")
    s = InputStream([a, b])
    it = iter(s)
    for _ in range(4):
        next(it)
    assert (s.cursor.file, s.cursor.consumed) == (1, 4)
    assert _texts(list(InputStream([a, b], cursor=s.cursor))) == ["5"]


# ---- memory -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["txt", "jsonl.zst"])
def test_200k_lines_bounded_memory(tmp_path: Path, fmt: str) -> None:
    n = 200_000
    line = (
        "a fairly ordinary input text about some topic or other, number {i:07d}, "
        "padded out a bit more"
    )
    if fmt == "txt":
        p = tmp_path / "big.txt"
        p.write_text("".join(line.format(i=i) + "\n" for i in range(n)))
    else:
        p = tmp_path / "big.jsonl.zst"
        data = b"".join(b'{"text": "%s"}\n' % line.format(i=i).encode() for i in range(n))
        p.write_bytes(zstandard.ZstdCompressor(level=1).compress(data))
        del data
    tracemalloc.start()
    try:
        count, last = 0, None
        for rec in InputStream([p]):
            count += 1
            last = rec
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert isinstance(last, SourceRecord) and last.text.endswith("0199999, padded out a bit more")
    raw_size = n * len(line)  # ~19 MB of text
    assert peak < 4 * 1024 * 1024, peak
    assert peak < raw_size / 4


# ---- resolve ------------------------------------------------------------------------------------


def test_resolve_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found") as info:
        resolve([str(tmp_path / "nope.txt")])
    assert "nope.txt" in str(info.value)


def test_resolve_directory(tmp_path: Path) -> None:
    d = tmp_path / "dir.jsonl"
    d.mkdir()
    with pytest.raises(InputError, match="directory"):
        resolve([str(d)])


def test_resolve_unknown_suffix(tmp_path: Path) -> None:
    p = tmp_path / "data.csv"
    p.write_text("text\nhello\n")
    with pytest.raises(InputError, match="unknown kind") as info:
        resolve([str(p)])
    assert "data.csv" in str(info.value)


def test_resolve_keeps_order(tmp_path: Path) -> None:
    a = tmp_path / "b.txt"
    a.write_text("x\n")
    b = _write_jsonl(tmp_path / "a.jsonl", [{"text": "y"}])
    assert resolve([str(a), str(b)]) == [a, b]


def test_txt_zst_is_read_as_text(tmp_path: Path) -> None:
    p = tmp_path / "texts.txt.zst"
    data = b'plain text one\n\n  \r\nplain text two\r\n{"text": "x"}'
    p.write_bytes(zstandard.ZstdCompressor().compress(data))
    assert resolve([str(p)]) == [p]
    recs = list(InputStream([p]))
    assert all(type(r) is SourceRecord for r in recs)
    assert _texts(recs) == ["plain text one", "plain text two", '{"text": "x"}']  # lines, not JSON
    assert [r.where for r in recs] == [f"{p}:1", f"{p}:4", f"{p}:5"]
    assert recs[0].source_id == content_id("text", "plain text one")


def test_txt_zst_same_ids_as_txt_and_max_chars(tmp_path: Path) -> None:
    t = tmp_path / "a.txt"
    t.write_text("the same text\n" + "y" * 50 + "\n")
    z = tmp_path / "a.txt.zst"
    z.write_bytes(zstandard.ZstdCompressor().compress(t.read_bytes()))
    plain = list(InputStream([t], max_chars=20))
    packed = list(InputStream([z], max_chars=20))
    assert [(r.source_id, r.text) for r in plain] == [(r.source_id, r.text) for r in packed]
    assert packed[1].text == "y" * 20


def test_txt_zst_multi_frame(tmp_path: Path) -> None:
    p = tmp_path / "m.txt.zst"
    c = zstandard.ZstdCompressor()
    p.write_bytes(c.compress(b"one\ntwo\n") + c.compress(b"") + c.compress(b"three\n"))
    assert _texts(list(InputStream([p]))) == ["one", "two", "three"]


def test_corrupt_txt_zst_is_an_input_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.txt.zst"
    p.write_bytes(b"not zstd" * 20)
    with pytest.raises(InputError, match="bad.txt.zst"):
        list(InputStream([p]))


@pytest.mark.parametrize(
    "name", ["data.json", "data.zst", "data.csv.zst", "data.txt.gz", "data.jsonl.gz"]
)
def test_resolve_refuses_json_and_bare_zst(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    data = b'{"text": "x"}\n'
    p.write_bytes(zstandard.ZstdCompressor().compress(data) if name.endswith(".zst") else data)
    with pytest.raises(InputError, match="unknown kind") as info:
        resolve([str(p)])
    assert name in str(info.value)
    assert ".txt.zst" in str(info.value)  # the message lists what is accepted


@pytest.mark.parametrize("name", ["a.txt", "a.txt.zst", "a.jsonl", "a.jsonl.zst", "a.parquet"])
def test_resolve_accepts_every_known_kind(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(b"x")
    assert resolve([str(p)]) == [p]


# ---- progress totals ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["c.txt", "c.txt.zst", "c.jsonl"])
def test_count_records_matches_stream_simple(tmp_path: Path, name: str) -> None:
    from engine.io.sources import count_records

    data = b"one\n\ntwo\nthree" if name != "c.jsonl" else b'{"text": "a"}\n\n{"text": "b"}\n'
    p = tmp_path / name
    p.write_bytes(zstandard.ZstdCompressor().compress(data) if name.endswith(".zst") else data)
    assert count_records([p]) == len(list(InputStream([p])))


def test_count_records_runs_of_blank_lines(tmp_path: Path) -> None:
    from engine.io.sources import count_records

    p = tmp_path / "gaps.txt"
    p.write_bytes(b"a\n\n\nb\n")
    assert count_records([p]) == len(list(InputStream([p]))) == 2
