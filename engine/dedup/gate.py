"""The in-stream dedup gate: quality -> exact -> MinHash -> semantic, keep-first.

A window of candidates is prepared at once (MinHash signatures and embeddings, in a
worker thread, embeddings in length-sorted batches), then decided one by one in arrival
order against everything accepted so far, the window's earlier members included. Only
accepted personas enter the indexes, so all of them share one position numbering.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import GateCfg
from engine.dedup import quality
from engine.dedup.base import Decision, Gate
from engine.dedup.exact import ExactIndex, text_hash
from engine.stages.base import Candidate


@dataclass
class Prepared:
    """What the slow part of the gate computed for a window (no index state touched)."""

    minhash: list[Any] | None
    vectors: np.ndarray | None
    seconds: float


class DedupGate(Gate):
    """The gate as DESIGN.md draws it; each stage can be switched off in config."""

    def __init__(self, cfg: GateCfg, embedder: Any = None) -> None:
        self.cfg = cfg
        self.window_count = cfg.window
        self.window_seconds = cfg.window_seconds
        self.version = 0
        self.exact = ExactIndex(cfg.exact.expected_items, cfg.exact.false_positive_rate) if cfg.exact.enabled else None
        self.minhash = None
        if cfg.minhash.enabled:
            from engine.dedup.minhash import MinHashIndex

            m = cfg.minhash
            self.minhash = MinHashIndex(m.threshold, m.num_perm, m.ngram, m.bands or None, m.rows or None, m.seed)
        self.embedder = None
        self.semantic = None
        if cfg.semantic.enabled:
            self.embedder = embedder or make_embedder(cfg)
            self.semantic = self._new_semantic()
        self.heavy = self.embedder is not None
        self._ids = np.zeros((1024, 16), dtype=np.uint8)
        self._n = 0
        self.embed_seconds = 0.0
        self.embedded = 0

    def _new_semantic(self) -> Any:
        from engine.dedup.semantic import SemanticIndex

        s = self.cfg.semantic
        assert self.embedder is not None
        return SemanticIndex(self.embedder.dim, s.threshold, s.dtype, s.connectivity, s.expansion_add,
                             s.expansion_search, threads=s.threads)

    # ---- the two phases ---------------------------------------------------------------------
    def prepare(self, texts: list[str]) -> Prepared:
        """MinHash signatures and embeddings for a window; safe to run in a worker thread."""
        t0 = time.perf_counter()
        mh = self.minhash.prepare_many(texts) if self.minhash is not None else None
        vecs = self.embedder.embed(texts) if self.embedder is not None else None
        return Prepared(mh, vecs, time.perf_counter() - t0)

    def decide(self, candidates: list[Candidate], prepared: Any) -> list[Decision]:
        """Keep-first verdicts in arrival order; accepted items enter every index at once."""
        if prepared is None:
            prepared = self.prepare([c.persona for c in candidates])
        if prepared.vectors is not None:
            self.embed_seconds += prepared.seconds
            self.embedded += len(candidates)
        window = self.semantic.window(prepared.vectors) if self.semantic is not None else None
        out = []
        for i, cand in enumerate(candidates):
            dec = self._decide_one(i, cand, prepared, window)
            out.append(dec)
        return out

    def _decide_one(self, i: int, cand: Candidate, prepared: Prepared, window: Any) -> Decision:
        cfg = self.cfg
        if cfg.quality.enabled:
            reason = quality.check(cand.persona, cfg.quality)
            if reason is not None:
                return Decision(False, "quality", reason)
        h = text_hash(cand.persona)
        if self.exact is not None:
            pos = self.exact.query(h)
            if pos is not None:
                return Decision(False, "exact", "duplicate", 1.0, self.id_at(pos))
        if self.minhash is not None:
            assert prepared.minhash is not None
            hit = self.minhash.query(prepared.minhash[i])
            if hit is not None:
                return Decision(False, "minhash", "near_duplicate", round(hit[1], 4), self.id_at(hit[0]))
        if window is not None:
            match = window.check(i)
            if match is not None:
                return Decision(False, "semantic", "similar", round(float(match[1]), 4), self.id_at(match[0]))
        self._accept(i, cand, h, prepared, window)
        return Decision(True)

    def _accept(self, i: int, cand: Candidate, h: int, prepared: Prepared, window: Any) -> None:
        pos = self._n
        if self.exact is not None:
            self.exact.add(h)
        if self.minhash is not None:
            assert prepared.minhash is not None
            self.minhash.add(prepared.minhash[i])
        if window is not None:
            window.accept(i)
        if pos == len(self._ids):
            self._ids = np.resize(self._ids, (2 * pos, 16))
        self._ids[pos] = np.frombuffer(bytes.fromhex(cand.id.ljust(32, "0")[:32]), dtype=np.uint8)
        self._n += 1
        self.version += 1

    def id_at(self, pos: int) -> str:
        """The id of the kept persona at a position."""
        return bytes(self._ids[pos]).hex()

    def __len__(self) -> int:
        return self._n

    # ---- durability ---------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        np.save(directory / "ids.npy", self._ids[: self._n])
        if self.exact is not None:
            self.exact.save(directory / "exact")
        if self.minhash is not None:
            self.minhash.save(directory / "minhash")
        if self.semantic is not None:
            self.semantic.save(directory / "semantic")
        (directory / "gate.json").write_text(json.dumps({"items": self._n}))

    def load(self, directory: Path) -> None:
        ids = np.load(directory / "ids.npy")
        self._n = len(ids)
        self._ids = np.zeros((max(1024, 2 * self._n), 16), dtype=np.uint8)
        self._ids[: self._n] = ids
        c = self.cfg
        if self.exact is not None:
            self.exact = ExactIndex.load(directory / "exact", c.exact.expected_items, c.exact.false_positive_rate)
        if self.minhash is not None:
            m = c.minhash
            # a snapshot written under other MinHash settings is refused, not mixed
            self.minhash = type(self.minhash).load(directory / "minhash", threshold=m.threshold, num_perm=m.num_perm,
                                                   ngram=m.ngram, seed=m.seed)
        if self.semantic is not None:
            from engine.dedup.semantic import SemanticIndex

            self.semantic = SemanticIndex.load(directory / "semantic", threads=c.semantic.threads)
        for name, idx in (("exact", self.exact), ("minhash", self.minhash), ("semantic", self.semantic)):
            if idx is not None and len(idx) != self._n:
                from engine.errors import CheckpointError

                raise CheckpointError(
                    f"gate snapshot {directory}: {name} index holds {len(idx)} items, expected {self._n}")
        self.version = self._n

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kept": self._n}
        if self.minhash is not None:
            out["minhash"] = {"bands": self.minhash.bands, "rows": self.minhash.rows,
                              "threshold": self.cfg.minhash.threshold, "num_perm": self.cfg.minhash.num_perm}
        if self.exact is not None:
            out["exact"] = {"bloom_positives": self.exact.bloom_positives,
                            "bloom_false_positives": self.exact.false_positives}
        if self.embedder is not None:
            out["semantic"] = {"threshold": self.cfg.semantic.threshold, "provider": self.embedder.provider,
                               "model": str(getattr(self.embedder, "files", "")),
                               "texts_per_s": (round(self.embedded / self.embed_seconds, 1)
                                               if self.embed_seconds else None)}
        return out


def make_embedder(cfg: GateCfg) -> Any:
    """The configured embedder (onnxruntime is imported here, before usearch)."""
    from engine.dedup.embedder import Embedder

    s = cfg.semantic
    model = None if s.model == "default" else s.model
    return Embedder(model, Path(s.tokenizer) if s.tokenizer else None, providers=s.providers, threads=s.threads,
                    batch_size=s.batch_size, max_length=s.max_length)
