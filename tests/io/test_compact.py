"""One frame per finished file: `datasets` loads it, and a crash mid-swap loses nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine import config, runner
from engine.io import compact
from engine.io.checkpoint import Checkpointer
from engine.io.checkpoint import fsync_dir as real_fsync_dir
from engine.io.compact import compact_in_place, frame_count, staging_path
from engine.io.sinks import ZstdJsonlSink, read_records
from engine.testing.fake_openai import run_in_thread
from engine.testing.scripted import MethodModel

SINKS = ("personas", "rejected", "dead_letter")


def _multi_frame(path: Path) -> list[dict[str, Any]]:
    """Roots only in the first frame (relation null), relatives in the next: the shape `datasets` trips on."""
    records = [{"id": f"r{i}", "relation": None, "parent_id": None, "depth": 0} for i in range(5)]
    records += [{"id": f"c{i}", "relation": "colleague", "parent_id": f"r{i % 5}", "depth": 1} for i in range(5)]
    sink = ZstdJsonlSink(path)
    for i, rec in enumerate(records):
        sink.write(rec)
        if i in (4, 7):
            sink.sync()
    sink.close()
    return records


def test_compaction_keeps_every_record_in_one_frame(tmp_path: Path) -> None:
    path = tmp_path / "personas.jsonl.zst"
    records = _multi_frame(path)
    assert frame_count(path) == 4  # the empty frame at creation, then three flushes
    compact_in_place(path)
    assert frame_count(path) == 1
    assert read_records(path) == records
    assert not staging_path(path).exists()


def test_datasets_loads_a_compacted_file_whose_first_frame_had_only_nulls(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "personas.jsonl.zst"
    records = _multi_frame(path)
    compact_in_place(path)
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds["relation"] == [r["relation"] for r in records]
    assert ds.features["relation"].dtype == "string" and ds.features["depth"].dtype == "int64"


# ---- the run: compaction in step with the checkpoint ----------------------------------------------------------

def _cfg(base_url: str, limit: int) -> config.Config:
    return config.from_dict({
        "run": {"progress": "off", "limit": limit, "checkpoint_interval": 0.05},
        "endpoints": {"fake": {"base_url": base_url, "model": "m", "backoff_base": 0.01}},
        "text_to_persona": {"endpoint": "fake"},
        "expansion": {"endpoint": "fake", "max_depth": 2, "relations": 2},
        "synthesis": {"enabled": False},
        "gate": {"semantic": {"enabled": False}},
    })


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("".join(f"Bulletin {i} on the harbour works, item {i * 13}.\n" for i in range(6)))
    return path


def _state(out: Path) -> Any:
    return Checkpointer(out).load(None)


def _assert_consistent(out: Path) -> None:
    """Every sink is one frame and the checkpoint's offset is its size; no staging copy is left."""
    state = _state(out)
    for name in SINKS:
        path = out / f"{name}.jsonl.zst"
        assert frame_count(path) == 1, name
        assert state.sinks[name] == path.stat().st_size == state.extra["compacted"][name], name
        assert not staging_path(path).exists()
    assert "compacting" not in state.extra


def _records(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: read_records(out / f"{name}.jsonl.zst") for name in SINKS}


def test_finished_run_is_compacted_and_appending_after_it_works(tmp_path: Path, inputs: Path) -> None:
    out = tmp_path / "out"
    with run_in_thread(reply=MethodModel()) as fake:
        assert runner.execute(_cfg(fake.base_url, 2), out, [str(inputs)]).status == "finished"
        _assert_consistent(out)
        first = _records(out)
        assert len({p["source_id"] for p in first["personas"] if p["depth"] == 0}) == 2
        inode = (out / "personas.jsonl.zst").stat().st_ino
        # resuming a finished run changes nothing: no second compaction
        assert runner.execute(_cfg(fake.base_url, 2), out, [str(inputs)]).status == "finished"
        assert (out / "personas.jsonl.zst").stat().st_ino == inode and _records(out) == first
        # a larger limit (forced) appends after the compacted frame, then compacts again
        assert runner.execute(_cfg(fake.base_url, 4), out, [str(inputs)], force=True).status == "finished"
    _assert_consistent(out)
    later = _records(out)
    assert later["personas"][: len(first["personas"])] == first["personas"]
    assert len({p["source_id"] for p in later["personas"] if p["depth"] == 0}) == 4
    ids = [r["id"] for name in SINKS for r in later[name]]
    assert len(ids) == len(set(ids))


class Crash(Exception):
    pass


def _crash(*_: object) -> None:
    raise Crash


def _crash_on_second_call() -> Any:
    calls = []

    def fsync_then_crash(path: Path) -> None:
        calls.append(path)
        if len(calls) == 2:  # after the swaps, before the final checkpoint
            raise Crash
        real_fsync_dir(path)
    return fsync_then_crash


@pytest.mark.parametrize("where", ["before_swap", "after_swap"])
def test_crash_during_compaction_then_resume(tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch,
                                             where: str) -> None:
    out = tmp_path / "out"
    with run_in_thread(reply=MethodModel()) as fake:
        with monkeypatch.context() as m:
            if where == "before_swap":
                m.setattr(compact, "_swap", _crash)
            else:  # the first fsync makes the staging copies durable, the second follows the swaps
                m.setattr(compact, "fsync_dir", _crash_on_second_call())
            with pytest.raises(Crash):
                runner.execute(_cfg(fake.base_url, 3), out, [str(inputs)])
        state = _state(out)
        assert set(state.extra["compacting"]) == set(SINKS)  # the intent was recorded before any swap
        before = _records(out)  # the originals (before_swap) or the compacted copies (after_swap)
        assert all(staging_path(out / f"{n}.jsonl.zst").exists() == (where == "before_swap") for n in SINKS)
        assert runner.execute(_cfg(fake.base_url, 3), out, [str(inputs)]).status == "finished"
    _assert_consistent(out)
    assert _records(out) == before
    assert len(before["personas"]) > 3


def test_stale_staging_copy_is_removed_on_resume(tmp_path: Path, inputs: Path) -> None:
    out = tmp_path / "out"
    with run_in_thread(reply=MethodModel()) as fake:
        runner.execute(_cfg(fake.base_url, 2), out, [str(inputs)])
        first = _records(out)
        stale = staging_path(out / "personas.jsonl.zst")
        stale.write_bytes(b"half a frame")  # a crash while compacting, before the intent was saved
        assert runner.execute(_cfg(fake.base_url, 2), out, [str(inputs)]).status == "finished"
    assert not stale.exists() and _records(out) == first
    _assert_consistent(out)


def test_intent_that_matches_no_file_is_a_clear_error(tmp_path: Path, inputs: Path) -> None:
    out = tmp_path / "out"
    with run_in_thread(reply=MethodModel()) as fake:
        runner.execute(_cfg(fake.base_url, 2), out, [str(inputs)])
        ckpt = Checkpointer(out)
        state = ckpt.load(None)
        sizes = {name: 7 for name in SINKS}  # no file has 7 bytes and no staging copy exists
        ckpt.save(msgspec.structs.replace(state, extra={**state.extra, "compacting": sizes}))
        with open(out / "personas.jsonl.zst", "ab") as fh:  # and the file is neither copy
            fh.write(b"x")
        with pytest.raises(Exception, match="should hold the 7-byte compacted copy") as err:
            runner.execute(_cfg(fake.base_url, 2), out, [str(inputs)])
    assert "start over" in str(err.value)
    assert os.path.getsize(out / "personas.jsonl.zst") == state.sinks["personas"] + 1  # nothing was touched


def test_a_failed_compaction_leaves_a_finished_run_with_its_frames(tmp_path: Path, inputs: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    real = compact.compact

    def disk_full(path: Path, **kw: Any) -> int:
        staging_path(path).write_bytes(b"partial")
        if path.name.startswith("rejected"):
            raise OSError(28, "No space left on device")
        return real(path, **kw)

    with run_in_thread(reply=MethodModel()) as fake:
        with monkeypatch.context() as m:
            m.setattr(compact, "compact", disk_full)
            assert runner.execute(_cfg(fake.base_url, 3), out, [str(inputs)]).status == "finished"
        state = _state(out)
        assert "compacting" not in state.extra and not state.extra.get("compacted")
        for name in SINKS:
            path = out / f"{name}.jsonl.zst"
            assert not staging_path(path).exists() and state.sinks[name] == path.stat().st_size
        before = _records(out)
        assert frame_count(out / "personas.jsonl.zst") > 1
        # the next resume (space freed) compacts
        assert runner.execute(_cfg(fake.base_url, 3), out, [str(inputs)]).status == "finished"
    _assert_consistent(out)
    assert _records(out) == before


def test_an_intent_whose_staging_copy_was_lost_keeps_the_original(tmp_path: Path, inputs: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A power loss can take the staging copy's name after the intent was saved: the original stands."""
    out = tmp_path / "out"
    with run_in_thread(reply=MethodModel()) as fake:
        with monkeypatch.context() as m:
            m.setattr(compact, "_swap", _crash)
            with pytest.raises(Crash):
                runner.execute(_cfg(fake.base_url, 3), out, [str(inputs)])
        before = _records(out)
        for name in SINKS:
            staging_path(out / f"{name}.jsonl.zst").unlink()  # never reached the disk
        assert runner.execute(_cfg(fake.base_url, 3), out, [str(inputs)]).status == "finished"
    _assert_consistent(out)  # compacted again at this finish
    assert _records(out) == before
