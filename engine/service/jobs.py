"""Job records and their store: STATE_DIR/jobs/<id>/job.json, written atomically.

A job's life:

    queued ─▶ running ─▶ finished | failed
      ▲          │ pause             │ cancel
      │          ▼                   ▼
      └─ resume ─ paused         cancelling ─▶ cancelled
                 (pausing while its child checkpoints and exits)

A daemon that restarts re-launches every job left queued, running or pausing-for-restart;
one left pausing becomes paused and one left cancelling becomes cancelled.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import msgspec

from engine.service.api import JobState


class Job(msgspec.Struct, kw_only=True):
    """Everything the daemon keeps about a job (no secrets: configs name env vars only)."""

    id: str
    name: str = ""
    state: JobState = "queued"
    weight: float = 1.0
    inputs: list[str] = []
    output: str = ""
    output_was_empty: bool = True  # the output dir held no files at submit (a re-launch may then --force)
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str = ""
    launches: int = 0
    crashes: int = 0  # re-launches in a row after a child died of a signal nobody sent
    pid: int | None = None
    allot: dict[str, list[float]] = {}  # endpoint name -> [max_in_flight, rpm, tpm] of the last launch
    scrubbed: list[str] = []
    secret_envs: list[str] = []  # NAMES of env vars holding keys (their values are redacted from errors)


def new_id() -> str:
    """A sortable, unguessable job id: UTC time then 6 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class JobStore:
    """Reads and writes job folders under STATE_DIR/jobs."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def dir(self, job_id: str) -> Path:
        return self.root / job_id

    def save(self, job: Job) -> None:
        """Write job.json atomically (temp file, fsync, rename)."""
        d = self.dir(job.id)
        d.mkdir(parents=True, exist_ok=True)
        path = d / "job.json"
        tmp = d / "job.json.tmp"
        with open(tmp, "wb") as fh:
            fh.write(msgspec.json.encode(job))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def load_all(self) -> dict[str, Job]:
        """Every job with a readable job.json, oldest first."""
        out: dict[str, Job] = {}
        for path in sorted(self.root.glob("*/job.json")):
            try:
                job = msgspec.json.decode(path.read_bytes(), type=Job)
            except (OSError, msgspec.DecodeError):
                continue  # a folder without a valid record is not a job (e.g. a submit cut short)
            out[job.id] = job
        return out
