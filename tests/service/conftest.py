"""Shared pieces for the daemon tests: a fake LLM endpoint, job configs, inputs, output checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.service.harness import verify_outputs
from engine.testing.fake_openai import run_in_thread

JOBS = ("nurse", "welder", "violinist", "beekeeper", "actuary", "glassblower", "midwife", "surveyor",
        "cartographer", "sommelier", "locksmith", "paramedic", "archivist", "falconer", "stonemason")
TOPICS = ("medieval siege engines", "tidal energy", "jazz harmony", "urban foraging", "chess endgames",
          "volcanic soils", "sourdough chemistry", "bird migration", "tax law", "retro video games")


def reply(body: dict) -> str:
    """A persona per input; every tenth input repeats an earlier one (the gate rejects it)."""
    prompt = body["messages"][-1]["content"]
    at = prompt.find("item-")
    i = int(prompt[at + 5:at + 11]) if at >= 0 else 0
    if i % 10 == 9:
        i -= 9
    job, topic = JOBS[i % len(JOBS)], TOPICS[(i // len(JOBS)) % len(TOPICS)]
    return json.dumps({"persona": f"A {job} who spends weekends reading about {topic}, case {i}."})


@pytest.fixture(scope="module")
def fake() -> Iterator[object]:
    """A fake OpenAI endpoint, 20 ms per reply, shared by a module's tests."""
    with run_in_thread(reply=reply, latency=0.02) as f:
        yield f


def config_text(base_url: str, *, max_in_flight: int = 8, extra: str = "", headers: str = "") -> str:
    """A job config: one endpoint, Text-to-Persona only, light gate stages (no embedder)."""
    return f"""
[run]
checkpoint_interval = 0.25
log_interval = 1.0

[endpoints.fake]
base_url = "{base_url}/v1"
model = "m"
max_in_flight = {max_in_flight}
backoff_base = 0.01
backoff_max = 0.05
{headers}

[text_to_persona]
endpoint = "fake"
parse_retries = 1

[expansion]
enabled = false

[synthesis]
enabled = false

[gate.semantic]
enabled = false
{extra}
"""


def write_inputs(path: Path, n: int, prefix: str = "in") -> set[str]:
    """n JSONL inputs with ids `{prefix}-00000`…; returns the ids."""
    ids = set()
    with path.open("w") as fh:
        for i in range(n):
            rid = f"{prefix}-{i:05d}"
            ids.add(rid)
            fh.write(json.dumps({"id": rid, "text": f"item-{i:06d} plain text about things"}) + "\n")
    return ids


def check_outputs(outdir: Path, expected: set[str]) -> dict[str, int]:
    """The crash/resume invariants (see engine.service.harness.verify_outputs)."""
    counts = verify_outputs(outdir, expected)
    return {"personas": counts["personas"], "rejected": counts["rejected"], "dead": counts["dead_letter"]}
