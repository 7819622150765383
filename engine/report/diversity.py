"""The Persona Hub diversity check: do similar personas produce similar data?

Persona pairs are binned by the cosine of their persona embeddings; for each bin and
task we report the mean cosine of what the two personas produced. The report's claim is
that output similarity grows with persona similarity. Random pairs of a deduplicated
hub are almost all dissimilar, so pairs are drawn per bin (stratified) from a seeded
sample of personas: every bin that has pairs gets its share of the `pairs` budget.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.report.frames import FrameReader
from engine.report.gather import TASKS

# the fields that carry what a task produced, tried in order; a tuple joins its fields
TEXT_FIELDS: dict[str, list[tuple[str, ...]]] = {
    "math": [("problem",)],
    "logic": [("puzzle",), ("question",), ("problem",)],
    "instruction": [("instruction",), ("prompt",)],
    "knowledge": [("question", "answer")],
    "npc": [("name", "background")],
    "tool": [("description",)],
}
METADATA = {"id", "persona_id", "persona", "task", "mode", "constraints", "model", "usage", "created_at",
            "solver_model", "verified", "votes", "agreement", "required", "answers", "extracted", "kind",
            "partner_id", "partner", "world"}


class TextEmbedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def output_text(task: str, rec: dict[str, Any]) -> str:
    """The text that stands for what a task record produced (lenient about the schema)."""
    for fields in TEXT_FIELDS.get(task, []):
        parts = [rec[f].strip() for f in fields if isinstance(rec.get(f), str) and rec[f].strip()]
        if parts:
            return "\n".join(parts)
    msgs = rec.get("messages")
    if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) and isinstance(msgs[0].get("content"), str):
        return str(msgs[0]["content"]).strip()
    for nested in ("interface", "tool", "npc"):
        inner = rec.get(nested)
        if isinstance(inner, dict):
            text = output_text(task, inner)
            if text:
                return text
    rest = {k: v for k, v in rec.items() if k not in METADATA}
    return json.dumps(rest, ensure_ascii=False, sort_keys=True) if rest else ""


def _rank(seed: int, pid: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{pid}".encode(), digest_size=8).digest(), "big")


def sample_outputs(path: Path, task: str, *, seed: int, size: int) -> dict[str, tuple[str, str]]:
    """persona id -> (persona text, output text) for a seeded sample of up to `size` personas.

    Bottom-k by a seeded hash of the persona id: one pass, bounded memory, and the same
    personas are picked in every task file, so their embeddings are shared.
    """
    heap: list[tuple[int, str]] = []  # max-heap on rank (negated)
    kept: dict[str, tuple[str, str]] = {}
    for rec in FrameReader(path):
        pid, persona = rec.get("persona_id"), rec.get("persona")
        if pid is None or not isinstance(persona, str) or not persona.strip():
            continue
        if rec.get("kind") == "dialogue":  # written by two personas
            continue
        pid = str(pid)
        if pid in kept:
            continue  # the persona's first record stands for it
        r = _rank(seed, pid)
        if len(heap) >= size and r >= -heap[0][0]:
            continue
        text = output_text(task, rec)
        if not text:
            continue
        if len(heap) >= size:
            _, out = heapq.heappop(heap)
            del kept[out]
        heapq.heappush(heap, (-r, pid))
        kept[pid] = (persona, text)
    return kept


def stratified_pairs(sims: np.ndarray, edges: np.ndarray, budget: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into `sims`) of up to `budget` pairs spread over the bins, and each bin's pair count."""
    nb = len(edges) - 1
    which = np.clip(np.searchsorted(edges, sims, side="right") - 1, 0, nb - 1)
    members = [np.flatnonzero(which == b) for b in range(nb)]
    avail = np.array([len(m) for m in members])
    take = np.zeros(nb, dtype=int)
    left = budget
    while left > 0:
        open_ = [b for b in range(nb) if take[b] < avail[b]]
        if not open_:
            break
        share = max(1, left // len(open_))
        for b in open_:
            add = min(share, avail[b] - take[b], left)
            take[b] += add
            left -= add
            if left == 0:
                break
    chosen = [rng.choice(members[b], size=take[b], replace=False) for b in range(nb) if take[b]]
    return (np.concatenate(chosen) if chosen else np.zeros(0, dtype=int)), avail


def _mean(x: np.ndarray) -> float | None:
    return round(float(x.mean()), 4) if len(x) else None


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r, or None where it is undefined (a constant side: every output alike, say)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:  # exact: a float std of equal values need not be 0
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        r = float(np.corrcoef(x, y)[0, 1])
    return round(r, 4) if math.isfinite(r) else None


def _task(task: str, sample: dict[str, tuple[str, str]], pvec: dict[str, np.ndarray], embedder: TextEmbedder,
          edges: np.ndarray, pairs: int, rng: np.random.Generator, min_pairs: int) -> dict[str, Any]:
    ids = sorted(sample)
    n = len(ids)
    if n < 2:
        return {"personas": n, "pairs": 0, "bins": [], "pearson": None, "increasing": None}
    P = np.stack([pvec[i] for i in ids])
    iu, ju = np.triu_indices(n, 1)
    psim = (P @ P.T)[iu, ju]
    chosen, avail = stratified_pairs(psim, edges, pairs, rng)
    a, b = iu[chosen], ju[chosen]
    used = sorted(set(a.tolist()) | set(b.tolist()))
    vec = embedder.embed([sample[ids[k]][1] for k in used])
    row = {k: r for r, k in enumerate(used)}
    va, vb = vec[[row[k] for k in a]], vec[[row[k] for k in b]]
    osim = (va * vb).sum(axis=1)
    ps = psim[chosen]
    nb = len(edges) - 1
    which = np.clip(np.searchsorted(edges, ps, side="right") - 1, 0, nb - 1)
    bins: list[dict[str, Any]] = []
    means: list[float] = []
    for k in range(nb):
        m = which == k
        mean_out = _mean(osim[m])
        if mean_out is not None and int(m.sum()) >= max(min_pairs, 1):
            means.append(mean_out)
        bins.append({"lo": round(float(edges[k]), 3), "hi": round(float(edges[k + 1]), 3), "pairs": int(m.sum()),
                     "available": int(avail[k]), "persona_sim": _mean(ps[m]), "output_sim": mean_out})
    increasing = all(u <= v for u, v in zip(means, means[1:], strict=False)) if len(means) >= 2 else None
    return {"personas": n, "pairs": int(len(chosen)), "bins": bins, "pearson": _pearson(ps, osim),
            "increasing": increasing}


def diversity(outdir: Path, embedder: TextEmbedder | None = None, *, cfg: Any = None, pairs: int = 500,
              pool: int = 600, bins: int = 5, seed: int = 0, min_pairs: int = 5) -> dict[str, Any]:
    """The diversity table: per task, per persona-similarity bin, the mean output similarity."""
    settings = {"pairs": pairs, "pool": pool, "bins": bins, "seed": seed, "min_pairs": min_pairs}
    samples = {t: sample_outputs(p, t, seed=seed, size=pool)
               for t in TASKS if (p := Path(outdir) / f"{t}.jsonl.zst").exists()}
    samples = {t: s for t, s in samples.items() if len(s) >= 2}
    if not samples:
        return {"status": "skipped", "reason": "no synthesis outputs from two or more personas", **settings}
    if embedder is None:
        try:
            embedder = make_embedder(cfg)
        except Exception as e:  # noqa: BLE001  (the rest of the report stands without it)
            return {"status": "skipped", "reason": f"no embedder: {e}", **settings}
    personas: dict[str, str] = {}
    for s in samples.values():
        for pid, (persona, _) in s.items():
            personas.setdefault(pid, persona)
    order = sorted(personas)
    vecs = embedder.embed([personas[p] for p in order])
    pvec = dict(zip(order, vecs, strict=True))
    edges = np.linspace(0.0, 1.0, bins + 1)
    tasks = {t: _task(t, s, pvec, embedder, edges, pairs, np.random.default_rng([seed, i]), min_pairs)
             for i, (t, s) in enumerate(sorted(samples.items()))}
    return {"status": "ok", **settings, "embedder": repr(embedder), "tasks": tasks,
            "note": "pairs are drawn per persona-similarity bin; the first bin also holds negative cosines"}


def make_embedder(cfg: Any = None) -> TextEmbedder:
    """The gate's embedder as the config sets it ([gate.semantic]), else the default one."""
    from engine.dedup.embedder import Embedder  # before anything that imports usearch

    if cfg is None:
        return Embedder()
    s = cfg.gate.semantic
    return Embedder(None if s.model == "default" else s.model, Path(s.tokenizer) if s.tokenizer else None,
                    providers=s.providers, threads=s.threads, batch_size=s.batch_size, max_length=s.max_length)
