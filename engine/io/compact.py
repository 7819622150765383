"""Rewrite a finished .jsonl.zst file as one zstd frame.

A run writes many frames (one per flush), which every zstd reader accepts. Hugging Face
`datasets` reads .zst through fsspec, whose reader stops at each frame boundary, so it
infers the schema from the first frame alone; a column that is null throughout that
frame (a root persona's `relation`) then fails to cast once a later frame has a value.
One frame per finished file lets `datasets.load_dataset("json", ...)` see a whole file
of up to 10 MB (its read size) in its first batch.

The swap is crash safe together with the checkpoint (`compact_outputs`):
the compacted copy is written and fsynced under a staging name, the checkpoint then
records its size as an intent, and only then does it replace the original. A resume
that finds the intent finishes the swap (`recover`), so the checkpoint offset and
the file always agree.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import zstandard

from engine.errors import CheckpointError
from engine.io.checkpoint import Checkpointer, State, fsync_dir

__all__ = ["compact", "compact_in_place", "compact_outputs", "frame_count", "recover", "staging_path"]

SUFFIX = ".compact"
CHUNK = 1 << 20


def staging_path(path: Path) -> Path:
    """Where the one-frame copy of ``path`` is written before it replaces it."""
    return path.with_name(path.name + SUFFIX)


def frame_count(path: Path) -> int:
    """How many zstd frames ``path`` holds (each frame decoded once; for checks and tests)."""
    data = path.read_bytes()
    count, pos = 0, 0
    while pos < len(data):
        obj = zstandard.ZstdDecompressor().decompressobj()  # stops at the end of one frame
        obj.decompress(data[pos:])
        used = len(data) - pos - len(obj.unused_data)
        if used <= 0:
            raise ValueError(f"{path}: no zstd frame at byte {pos}")
        pos += used
        count += 1
    return count


def compact(path: Path, *, level: int = 3) -> int:
    """Write ``path``'s records as one frame to its staging path, fsynced; returns its size."""
    staged = staging_path(path)
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
    with open(path, "rb") as src, open(staged, "wb") as dst:
        reader = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
        with cctx.stream_writer(dst, closefd=False) as writer:
            while chunk := reader.read(CHUNK):
                writer.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return staged.stat().st_size


def compact_in_place(path: Path) -> None:
    """Compact a file no checkpoint refers to (`persona dedup`'s outputs)."""
    compact(path)
    _swap(path)
    fsync_dir(path.parent)


def compact_outputs(ckpt: Checkpointer, state: State, paths: dict[str, Path]) -> State:
    """Compact every sink not compacted at its current offset; returns the state now saved.

    ``state`` must be the last checkpoint, written after every sink was synced and
    closed. ``state.extra["compacted"]`` names the sizes already compacted.
    """
    done: dict[str, int] = dict(state.extra.get("compacted", {}))
    todo = {name: path for name, path in paths.items() if done.get(name) != state.sinks.get(name)}
    if not todo:
        return state
    try:
        sizes = {name: compact(path) for name, path in todo.items()}
        fsync_dir(ckpt.dir.parent)  # the staging copies' names are durable before the intent names them
    except OSError:
        for path in todo.values():  # no intent yet: the originals stand
            staging_path(path).unlink(missing_ok=True)
        raise
    ckpt.save(msgspec.structs.replace(state, extra={**state.extra, "compacting": sizes}))
    for path in todo.values():
        _swap(path)
    fsync_dir(ckpt.dir.parent)
    final = msgspec.structs.replace(
        state, sinks={**state.sinks, **sizes}, extra={**state.extra, "compacted": {**done, **sizes}})
    ckpt.save(final)
    return final


def recover(state: State, paths: dict[str, Path]) -> State:
    """Finish a swap a crash interrupted and drop stale staging copies; returns the state to resume."""
    intents: dict[str, int] = dict(state.extra.get("compacting", {}))
    for name, path in paths.items():
        if name not in intents:
            staging_path(path).unlink(missing_ok=True)
            continue
        try:
            if not _finish_swap(path, intents[name], state.sinks.get(name)):
                del intents[name]  # the staging copy was lost before the swap: the original stands
        except OSError as e:
            raise CheckpointError(f"{e}; the output files no longer match the checkpoint, "
                                  f"so remove {path.parent} (or choose another -o OUTDIR) to start over") from None
    if paths:
        fsync_dir(next(iter(paths.values())).parent)  # the swaps are durable before a checkpoint relies on them
    if not intents:
        return msgspec.structs.replace(state, extra={k: v for k, v in state.extra.items() if k != "compacting"})
    extra = {k: v for k, v in state.extra.items() if k != "compacting"}
    extra["compacted"] = {**extra.get("compacted", {}), **intents}
    return msgspec.structs.replace(state, sinks={**state.sinks, **intents}, extra=extra)


def _swap(path: Path) -> None:
    os.replace(staging_path(path), path)


def _finish_swap(path: Path, size: int, original: int | None) -> bool:
    """Put the staged copy of ``path`` (``size`` bytes) in place, unless that already happened.

    False when neither copy is there but the original (``original`` bytes) is: a power loss
    took the staging copy's name before the swap, so the original stands.
    """
    staged = staging_path(path)
    if staged.exists():
        if staged.stat().st_size != size:
            raise OSError(f"{staged} has {staged.stat().st_size} bytes, the checkpoint expects {size}")
        _swap(path)
        return True
    if path.exists() and path.stat().st_size == size:
        return True
    if path.exists() and path.stat().st_size == original:
        return False
    raise OSError(f"{path} should hold the {size}-byte compacted copy; it does not")
