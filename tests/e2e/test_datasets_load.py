"""`datasets.load_dataset("json", data_files=...)` loads every output file of a full run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import config, runner
from engine.io import compact
from engine.io.sinks import read_records
from engine.testing.fake_openai import Fault, run_in_thread
from engine.testing.scripted import MethodModel

datasets = pytest.importorskip("datasets")

TASKS = ("math", "logic", "instruction", "knowledge", "npc", "tool")


def _staggered(n: int, body: dict[str, Any]) -> Fault | None:
    """Roots arrive one by one and relatives late, so the first frames hold roots only (relation null).

    `datasets` reads a multi-frame .zst one frame per batch (plus the next line) and takes the schema from
    the first batch; without compaction, the first relatives' `relation` then fails to cast.
    """
    system = body["messages"][0]["content"]
    if "connected to a text" in system:
        return Fault("slow", delay=0.15 * (n % 8))
    return Fault("slow", delay=1.5) if "close to a given person" in system else None


@pytest.mark.slow
def test_every_output_file_loads_with_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    inputs = tmp_path / "in.txt"
    inputs.write_text("".join(f"Field notes {i}: the tide tables for pier {i * 3}.\n" for i in range(8)))
    frames_before: dict[str, int] = {}
    real_compact = compact.compact

    def counting(path: Path, **kw: Any) -> int:
        frames_before[path.name] = compact.frame_count(path)
        return real_compact(path, **kw)

    monkeypatch.setattr(compact, "compact", counting)
    with run_in_thread(reply=MethodModel(), faults=_staggered) as fake:
        cfg = config.from_dict({
            "run": {"progress": "off", "checkpoint_interval": 0.1},
            "endpoints": {"fake": {"base_url": fake.base_url, "model": "m", "max_in_flight": 16}},
            "text_to_persona": {"endpoint": "fake"},
            "expansion": {"endpoint": "fake", "max_depth": 2, "relations": 2},
            "synthesis": {"endpoint": "fake", "tasks": list(TASKS), "max_personas": 12},
            "gate": {"semantic": {"enabled": False}},
        })
        out = tmp_path / "out"
        assert runner.execute(cfg, out, [str(inputs)]).status == "finished"
    assert frames_before["personas.jsonl.zst"] >= 3  # the run wrote many frames; compaction made one
    for name in ("personas", "rejected", "dead_letter", *TASKS):
        path = out / f"{name}.jsonl.zst"
        records = read_records(path)
        if not records:
            continue  # `datasets` refuses an empty file whatever its format
        ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
        assert ds.num_rows == len(records), name
        assert ds["id"] == [r["id"] for r in records], name
    personas = datasets.load_dataset("json", data_files=str(out / "personas.jsonl.zst"), split="train",
                                     cache_dir=str(tmp_path / "hf"))
    assert personas.features["relation"].dtype == "string"
    assert {r is None for r in personas["relation"]} == {True, False}  # roots and relatives
    math = read_records(out / "math.jsonl.zst")
    assert {r["answer"] is None for r in math} == {True, False}  # agreed and unverified problems
