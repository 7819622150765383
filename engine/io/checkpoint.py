"""Checkpoints: the run's state written atomically (temp file, fsync, rename).

The output files are the log; a checkpoint records where each sink's last complete frame
ends, how far the inputs were read, the work in flight, and a snapshot folder of the
gate's indexes. Parts of the engine add their own state under `extra`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import msgspec

from engine.errors import CheckpointError, FingerprintMismatch
from engine.io.sources import Cursor

VERSION = 1


class WorkItem(msgspec.Struct, kw_only=True):
    """One unit of LLM work: the stage that handles it and its payload."""

    key: str  # stable id of the work
    stage: str
    payload: dict[str, Any]
    attempts: int = 0  # transport failures so far
    bad_replies: int = 0  # unparseable replies so far
    last_error: str = ""


class State(msgspec.Struct, kw_only=True):
    """Everything a resume needs."""

    version: int = VERSION
    fingerprint: str
    seq: int = 0
    created_at: float = 0.0
    finished: bool = False
    inputs: list[str] = []
    cursor: Cursor = Cursor()
    inputs_done: bool = False
    sinks: dict[str, int] = {}
    inflight: list[WorkItem] = []
    counters: dict[str, int] = {}
    gate_dir: str = ""
    extra: dict[str, Any] = {}


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    """Reads and writes OUTDIR/checkpoint/state.json and its gate snapshot folders."""

    def __init__(self, outdir: Path) -> None:
        self.dir = outdir / "checkpoint"
        self.path = self.dir / "state.json"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self, fingerprint: str | None, *, force: bool = False) -> State:
        """Read the state; refuse one written under another config unless forced."""
        try:
            state = msgspec.json.decode(self.path.read_bytes(), type=State)
        except (OSError, msgspec.DecodeError) as e:
            raise CheckpointError(
                f"checkpoint {self.path} cannot be read ({e}); remove {self.dir} to start over") from None
        if state.version != VERSION:
            raise CheckpointError(f"checkpoint {self.path} has version {state.version}, this engine writes {VERSION}")
        if fingerprint is not None and state.fingerprint != fingerprint and not force:
            raise FingerprintMismatch(
                f"{self.dir.parent} was written with another config (fingerprint {state.fingerprint}, "
                f"now {fingerprint}). Use the same config to resume, another -o OUTDIR to start anew, "
                "or --force to continue with the new config (outputs then mix both)."
            )
        return state

    def gate_snapshot_dir(self, seq: int) -> Path:
        """A fresh folder for the gate's index snapshot of checkpoint `seq`."""
        d = self.dir / f"gate.{seq}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def save(self, state: State) -> None:
        """Write the state atomically, then drop snapshot folders it no longer names."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(msgspec.json.encode(state))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.dir)
        for old in self.dir.glob("gate.*"):
            if old.name != state.gate_dir:
                shutil.rmtree(old, ignore_errors=True)
