"""Semantic dedup index: usearch HNSW over L2-normalised embeddings, keep-first at a cosine.

Memory: we keep no second copy of the vectors. usearch stores each one (f16 by
default: 2·dim bytes, 768 B at dim 384, plus about 2·connectivity·4 B of graph
links), and ``Index.get`` reads the few top hits back so that every verdict rests
on a cosine we computed ourselves, not on the HNSW's ranking alone.

Window protocol (how the gate decides a batch of candidates in arrival order)::

    window = index.window(vectors)          # one multithreaded search for the whole window
    for i in arrival_order:
        if rejected_for_other_reasons(i):    # quality, exact, MinHash: just skip
            continue
        match = window.check(i)              # vs. the index AND members accepted so far
        if match is None:
            window.accept(i)                 # adds to the index; returns its position
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

# usearch 2.26.x segfaults when imported before onnxruntime; keep this line first
# (isort keeps it there: "onnxruntime" sorts before "usearch").
import onnxruntime  # noqa: F401
from usearch.index import BatchMatches, Index

__all__ = ["Match", "SemanticIndex", "Window"]

_INDEX_FILE = "index.usearch"
_META_FILE = "meta.json"
_DTYPES = ("f32", "f16", "bf16", "i8")


class Match(NamedTuple):
    """A near-duplicate verdict: the kept item's position and the cosine similarity to it."""

    position: int
    similarity: float


def _unit(vecs: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=-1, keepdims=True)
    out: np.ndarray = vecs / np.maximum(norms, 1e-12)
    return out


class SemanticIndex:
    """Accepted embeddings in an HNSW index; an item is a duplicate at cosine >= threshold."""

    def __init__(
        self,
        dim: int,
        threshold: float = 0.9,
        dtype: str = "f16",
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        candidates: int = 4,
        threads: int = 0,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.dim = dim
        self.threshold = threshold
        self.dtype = dtype
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        # Several hits per query: HNSW ranks by a lossy (f16) distance, we verify each.
        self.candidates = candidates
        self.threads = threads
        self._index = Index(
            ndim=dim,
            metric="cos",
            dtype=dtype,
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        self._stats = {"queries": 0, "matches": 0, "added": 0}

    def __len__(self) -> int:
        return len(self._index)

    def statistics(self) -> dict[str, int]:
        """Live counters: queries answered, matches found, vectors added, size."""
        return {**self._stats, "size": len(self)}

    def search(self, vecs: np.ndarray) -> list[Match | None]:
        """For each row, the best match in the index at cosine >= threshold, else None."""
        queries = _unit(np.atleast_2d(vecs))
        self._check_dim(queries)
        self._stats["queries"] += len(queries)
        if len(self) == 0 or len(queries) == 0:
            return [None] * len(queries)
        found = self._index.search(queries, min(self.candidates, len(self)), threads=self.threads)
        if isinstance(found, BatchMatches):
            keys, counts = np.asarray(found.keys), np.asarray(found.counts)
        else:  # usearch answers a one-row batch with a plain Matches
            keys, counts = np.asarray(found.keys).reshape(1, -1), np.array([len(found.keys)])
        results: list[Match | None] = []
        for row, query in enumerate(queries):
            hits = keys[row, : counts[row]]
            results.append(self._best(query, hits))
        self._stats["matches"] += sum(m is not None for m in results)
        return results

    def query(self, vec: np.ndarray) -> Match | None:
        """The best match of one vector in the index at cosine >= threshold, else None."""
        return self.search(np.asarray(vec).reshape(1, -1))[0]

    def add(self, vec: np.ndarray) -> int:
        """Add one vector; returns its position (0..n-1 in insertion order)."""
        row = np.asarray(vec, dtype=np.float32).reshape(1, -1)
        self._check_dim(row)
        position = len(self)
        self._index.add(position, row[0], threads=self.threads)
        self._stats["added"] += 1
        return position

    def window(self, vecs: np.ndarray) -> Window:
        """Start keep-first decisions over a window of candidates (see the module docstring)."""
        return Window(self, vecs)

    def save(self, directory: Path) -> None:
        """Write the index and its settings into ``directory`` atomically (temp, fsync, rename)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (_INDEX_FILE + ".tmp")
        self._index.save(str(tmp))
        _replace(tmp, directory / _INDEX_FILE)
        meta = {
            "dim": self.dim,
            "threshold": self.threshold,
            "dtype": self.dtype,
            "connectivity": self.connectivity,
            "expansion_add": self.expansion_add,
            "expansion_search": self.expansion_search,
            "candidates": self.candidates,
            "size": len(self),
        }
        tmp = directory / (_META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        _replace(tmp, directory / _META_FILE)

    @classmethod
    def load(cls, directory: Path, threads: int = 0) -> SemanticIndex:
        """An index saved by :meth:`save`; a size that disagrees with its settings is an error."""
        directory = Path(directory)
        meta = json.loads((directory / _META_FILE).read_text())
        size = meta.pop("size")
        index = cls(**meta, threads=threads)
        index._index.load(str(directory / _INDEX_FILE))
        if len(index) != size:
            raise ValueError(f"{directory}: index holds {len(index)} vectors, meta says {size}")
        return index

    def _best(self, query: np.ndarray, keys: np.ndarray) -> Match | None:
        """The verified best of the HNSW hits ``keys`` for a unit ``query``."""
        if len(keys) == 0:
            return None
        stored = self._index.get(keys, dtype="f32")
        items = stored if isinstance(stored, tuple) else (stored,)
        rows = [np.asarray(v, dtype=np.float32) for v in items]
        matrix = _unit(np.stack(rows).reshape(len(keys), self.dim))
        sims = matrix @ query
        best = int(np.argmax(sims))
        if sims[best] < self.threshold:
            return None
        return Match(int(keys[best]), float(sims[best]))

    def _check_dim(self, rows: np.ndarray) -> None:
        if rows.shape[-1] != self.dim:
            raise ValueError(f"vectors have dim {rows.shape[-1]}, the index {self.dim}")


class Window:
    """Keep-first decisions over one window: one batch search, then members checked as accepted.

    Valid while nothing but :meth:`accept` adds to the index: the window's batch search
    saw the index as it was, and members accepted since are compared exactly here.
    """

    def __init__(self, index: SemanticIndex, vecs: np.ndarray) -> None:
        self._index = index
        self._vecs = _unit(np.atleast_2d(vecs))
        self._hits = index.search(self._vecs)
        self._accepted = np.empty_like(self._vecs)
        self._positions: list[int] = []
        self._done: set[int] = set()

    def __len__(self) -> int:
        return len(self._vecs)

    def check(self, i: int) -> Match | None:
        """Member ``i``'s best match among the index and the members accepted so far, or None."""
        best = self._hits[i]
        m = len(self._positions)
        if m:
            sims = self._accepted[:m] @ self._vecs[i]
            j = int(np.argmax(sims))
            if sims[j] >= self._index.threshold and (best is None or sims[j] > best.similarity):
                best = Match(self._positions[j], float(sims[j]))
        return best

    def accept(self, i: int) -> int:
        """Add member ``i`` to the index (it is kept); returns its position there."""
        if i in self._done:
            raise ValueError(f"window member {i} was already accepted")
        self._done.add(i)
        position = self._index.add(self._vecs[i])
        self._accepted[len(self._positions)] = self._vecs[i]
        self._positions.append(position)
        return position


def _replace(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it over ``final`` and fsync the directory."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
