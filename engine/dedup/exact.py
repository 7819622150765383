"""Exact duplicates: normalised text -> 64-bit hash -> Bloom filter, positives confirmed.

Normalisation: Unicode NFKC, casefold, every run of whitespace or punctuation becomes one
space. A Bloom positive is confirmed against the stored hashes of the kept items, so a
false positive of the filter never drops a unique persona.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import numpy as np
from rbloom import Bloom

_SEP = re.compile(r"[\W_]+", re.UNICODE)
_MASK = (1 << 63) - 1


def normalise(text: str) -> str:
    """NFKC, casefold, punctuation and whitespace runs collapsed to one space."""
    return _SEP.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_hash(text: str) -> int:
    """A stable 63-bit hash of the normalised text (fits int64 storage and rbloom's i128)."""
    digest = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK


def _identity(x: int) -> int:
    return x


class ExactIndex:
    """Bloom filter over text hashes plus the kept hashes for confirmation."""

    def __init__(self, expected_items: int = 10_000_000, false_positive_rate: float = 0.01) -> None:
        self.expected_items = expected_items
        self.false_positive_rate = false_positive_rate
        # a named hash function makes the filter savable and the same in every process
        self.bloom = Bloom(expected_items, false_positive_rate, hash_func=_identity)
        self._hashes = np.zeros(1024, dtype=np.int64)
        self._n = 0
        self.bloom_positives = 0
        self.false_positives = 0

    def __len__(self) -> int:
        return self._n

    def query(self, h: int) -> int | None:
        """Position of a kept item with the same normalised text, or None."""
        if h not in self.bloom:
            return None
        self.bloom_positives += 1
        hits = np.flatnonzero(self._hashes[: self._n] == h)
        if hits.size == 0:
            self.false_positives += 1
            return None
        return int(hits[0])

    def add(self, h: int) -> int:
        """Record a kept item's hash; returns its position."""
        if self._n == len(self._hashes):
            self._hashes = np.resize(self._hashes, 2 * len(self._hashes))
        self._hashes[self._n] = h
        self.bloom.add(h)
        self._n += 1
        return self._n - 1

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.bloom.save(str(directory / "bloom.bin"))
        np.save(directory / "hashes.npy", self._hashes[: self._n])

    @classmethod
    def load(cls, directory: Path, expected_items: int, false_positive_rate: float) -> ExactIndex:
        idx = cls.__new__(cls)
        idx.expected_items, idx.false_positive_rate = expected_items, false_positive_rate
        idx.bloom = Bloom.load(str(directory / "bloom.bin"), _identity)
        hashes = np.load(directory / "hashes.npy")
        idx._hashes = np.zeros(max(1024, 2 * len(hashes)), dtype=np.int64)
        idx._hashes[: len(hashes)] = hashes
        idx._n = len(hashes)
        idx.bloom_positives = idx.false_positives = 0
        return idx
