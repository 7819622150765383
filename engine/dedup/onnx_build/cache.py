"""The on-disk cache of built models, keyed by the weights' hash, with checksums beside each file.

Layout: ``$PERSONA_CACHE_DIR/models/<sha256(weights)[:16]>/`` (default base
``~/.cache/persona-engine``) holding ``<variant>.onnx``, ``<variant>.onnx.sha256`` and
``<variant>.json`` (what was built and how). A file that is missing, fails its
checksum, or was built by another recipe is rebuilt, with a message on the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["CachedFile", "cache_root", "file_sha256"]

log = logging.getLogger(__name__)

ENV_VAR = "PERSONA_CACHE_DIR"


def cache_root() -> Path:
    """The engine's cache base: $PERSONA_CACHE_DIR, else ~/.cache/persona-engine."""
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "persona-engine"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` so that two processes never build at once."""
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CachedFile:
    """One built model in the cache: ``<name>.onnx`` with its checksum and build record."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / f"{name}.onnx"
        self._sum = directory / f"{name}.onnx.sha256"
        self._record = directory / f"{name}.json"

    def problem(self, recipe: str) -> str | None:
        """Why the cached file cannot be used as it is, or None when it can."""
        if not self.path.exists():
            return "missing"
        try:
            expected = self._sum.read_text().split()[0]
            record = json.loads(self._record.read_text())
        except (OSError, ValueError, IndexError):
            return "its checksum or build record is missing or unreadable"
        if record.get("recipe") != recipe:
            return f"built by recipe {record.get('recipe')!r}, this engine uses {recipe!r}"
        if file_sha256(self.path) != expected:
            return "checksum mismatch (corrupt)"
        return None

    def record(self) -> dict[str, Any]:
        """The build record written beside the file."""
        data: dict[str, Any] = json.loads(self._record.read_text())
        return data

    def ensure(self, recipe: str, build: Callable[[], tuple[bytes, dict[str, Any]]]) -> Path:
        """The file's path, after building it if it is missing, corrupt or stale."""
        with _locked(self.path.parent):
            problem = self.problem(recipe)
            if problem is None:
                return self.path
            log.warning("building %s (%s); this happens once per machine", self.path, problem)
            data, record = build()
            _write_atomic(self.path, data)
            _write_atomic(self._sum, f"{hashlib.sha256(data).hexdigest()}  {self.path.name}\n".encode())
            _write_atomic(self._record, json.dumps({**record, "recipe": recipe}, indent=1).encode())
            return self.path
