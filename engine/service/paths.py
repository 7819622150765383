"""Paths given through the API must lie under the configured roots: no `..`, no symlinks out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class PathRefused(ValueError):
    """Raised when an API path escapes the roots, holds `..`, or is not a usable path; names it."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class PathPolicy:
    """Resolves API paths against the first root and checks them against every root."""

    SPECIAL = frozenset({"demo"})  # input names the engine resolves itself (the packaged corpus)

    def __init__(self, roots: Sequence[str | Path]) -> None:
        if not roots:
            raise ValueError("at least one root is needed")
        self.roots = [Path(os.path.realpath(r)) for r in roots]

    def check(self, raw: str, *, base: Path | None = None, special: bool = False) -> str:
        """The real path of `raw` (relative to `base`, else the first root), if it is under a root."""
        if special and raw in self.SPECIAL:
            return raw
        if not raw or "\x00" in raw:
            raise PathRefused(raw, "not a usable path")
        if ".." in Path(raw).parts:
            raise PathRefused(raw, "'..' is not allowed in paths given to the daemon")
        p = Path(raw).expanduser() if raw.startswith("~") else Path(raw)
        if not p.is_absolute():
            p = (base or self.roots[0]) / p
        real = Path(os.path.realpath(p))  # follows every symlink that exists, so a link out is caught
        if not any(real == r or real.is_relative_to(r) for r in self.roots):
            roots = ", ".join(map(str, self.roots))
            why = "leads outside" if real != p else "is outside"
            raise PathRefused(raw, f"{why} the daemon's roots ({roots}); set [service] roots to allow it")
        return str(real)
