"""Stable content-hash ids (hex strings) for records and work items."""

from __future__ import annotations

import hashlib


def content_id(*parts: str | int | None) -> str:
    """A 128-bit blake2b hex id of the parts; equal parts give an equal id on every run."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(b"\x00" if p is None else str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()
