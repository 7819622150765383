"""Benchmark: streaming keep-first MinHash dedup, ours against rensa and datasketch.

Every method sees the same persona-like corpus (``bench/corpus.py``) one text at a time:
query the index, and insert the text only if no kept text is a near-duplicate. Each
method runs in its own subprocess so that peak RSS is its own. Reported per method:
items/s end to end (tokenising included), peak RSS and the RSS growth per kept item,
recall/precision against the exact greedy keep-first oracle (true word-set Jaccard
>= 0.9 with an earlier kept item), the same judged against the method's own kept set
("self"), and the reject share of each planted level.

    .venv/bin/python bench/dedup_minhash.py --n 100000 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus as corpus_mod  # noqa: E402

THRESHOLD = 0.9
NUM_PERM = 128
CHUNK = 1024  # sketches are computed per chunk; queries and inserts stay one at a time


# ---- workers (run in a subprocess each) ---------------------------------------------

_WORD = re.compile(r"\w+")


def _tokens(text: str) -> list[str]:
    """The engine's word tokens by the fastest pure-Python route."""
    # repeats are harmless to MinHash, so no set is built
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def run_ours(texts: list[str]) -> tuple[bytearray, dict[str, Any]]:
    from engine.dedup.minhash import IMPLEMENTATION, MinHashIndex

    index = MinHashIndex(threshold=THRESHOLD, num_perm=NUM_PERM)
    out = bytearray(len(texts))
    pos = 0
    for lo in range(0, len(texts), CHUNK):
        for item in index.prepare_many(texts[lo:lo + CHUNK]):
            if index.query(item) is None:
                index.add(item)
            else:
                out[pos] = 1
            pos += 1
    info = {"impl": IMPLEMENTATION, "bands": index.bands, "rows": index.rows, **index.stats()}
    return out, info


def run_rensa(texts: list[str], compact: bool = False) -> tuple[bytearray, dict[str, Any]]:
    """rensa 16 x 8, verified by estimated Jaccard on the kept signatures.

    ``compact`` keeps the signatures as one uint32 matrix instead of RMinHash objects
    (less memory, slower: the digest crosses into Python as a list).
    """
    import numpy as np
    from rensa import RMinHash, RMinHashLSH

    bands = 16  # 16 x 8 uses all 128 permutations; miss 1.2e-4 at J = 0.9
    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=bands)
    kept: list[Any] = []
    digests = np.zeros((1024, NUM_PERM), dtype=np.uint32)
    n_kept = 0
    out = bytearray(len(texts))
    pos = 0
    for lo in range(0, len(texts), CHUNK):
        sets = [_tokens(t) for t in texts[lo:lo + CHUNK]]
        for m in RMinHash.from_token_sets(sets, NUM_PERM, 1):
            cands = lsh.query(m)
            if compact:
                d = np.asarray(m.digest(), dtype=np.uint32)
                dup = bool(cands) and bool(
                    ((digests[np.asarray(cands)] == d).mean(axis=1) >= THRESHOLD).any())
            else:
                dup = any(m.jaccard(kept[c]) >= THRESHOLD for c in cands)
            if dup:
                out[pos] = 1
            else:
                if compact:
                    if n_kept == len(digests):
                        digests = np.concatenate([digests, np.zeros_like(digests)])
                    digests[n_kept] = d
                else:
                    kept.append(m)
                lsh.insert(n_kept, m)
                n_kept += 1
            pos += 1
    return out, {"bands": bands, "rows": NUM_PERM // bands,
                 "verify": "estimate (uint32 digest matrix)" if compact else "estimate"}


def run_datasketch(texts: list[str]) -> tuple[bytearray, dict[str, Any]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)  # its own (b, r) choice
    kept: list[Any] = []
    out = bytearray(len(texts))
    pos = 0
    for lo in range(0, len(texts), CHUNK):
        sets = [[w.encode() for w in _tokens(t)] for t in texts[lo:lo + CHUNK]]
        for m in MinHash.bulk(sets, num_perm=NUM_PERM):
            cands = lsh.query(m)
            if any(m.jaccard(kept[c]) >= THRESHOLD for c in cands):
                out[pos] = 1
            else:
                lsh.insert(len(kept), m)
                kept.append(m)
            pos += 1
    return out, {"bands": lsh.b, "rows": lsh.r, "verify": "estimate"}


WORKERS = {"ours": run_ours, "rensa": run_rensa,
           "rensa-compact": lambda t: run_rensa(t, compact=True),
           "datasketch": run_datasketch}


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so loading the texts is not counted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(method: str, texts_path: Path, out_path: Path) -> None:
    """Run one method on the texts; write decisions and print a JSON summary."""
    import gc

    import psutil

    texts = json.loads(texts_path.read_text())
    fn = WORKERS[method]
    fn(texts[:2000])  # warm imports and code paths; a fresh index is built below
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    reset = _reset_peak()
    t0 = time.perf_counter()
    decisions, info = fn(texts)
    elapsed = time.perf_counter() - t0
    peak = _peak_rss()
    out_path.write_bytes(bytes(decisions))
    kept = len(decisions) - sum(decisions)
    print(json.dumps({"method": method, "seconds": elapsed, "items_per_s": len(texts) / elapsed,
                      "peak_rss_mb": peak / 2**20, "rss_before_mb": rss0 / 2**20,
                      "peak_reset": reset, "kept": kept,
                      "bytes_per_kept_item": max(0, peak - rss0) / max(kept, 1),
                      "info": info}))


# ---- parent: corpus, oracle, metrics, table -----------------------------------------

def metrics(decided: list[bool], truth: list[int], self_truth: list[int] | None,
            items: list[corpus_mod.Item]) -> dict[str, Any]:
    """Recall/precision vs the oracle and vs the method's own kept set; level shares."""
    def pr(ref: list[int]) -> tuple[float, float, int, int]:
        tp = sum(1 for d, r in zip(decided, ref, strict=True) if d and r >= 0)
        fn = sum(1 for d, r in zip(decided, ref, strict=True) if not d and r >= 0)
        fp = sum(1 for d, r in zip(decided, ref, strict=True) if d and r < 0)
        return tp / max(tp + fn, 1), tp / max(tp + fp, 1), fn, fp
    recall, precision, fn, fp = pr(truth)
    s_recall, s_precision, s_fn, s_fp = pr(self_truth) if self_truth else (None,) * 4
    levels: dict[str, float] = {}
    for key in ("exact", *map(str, corpus_mod.NEAR_LEVELS)):
        idx = [i for i, it in enumerate(items)
               if (it.kind == "exact" if key == "exact" else
                   it.kind == "near" and str(it.level) == key)]
        levels[key] = sum(decided[i] for i in idx) / max(len(idx), 1)
    return {"recall": recall, "precision": precision, "missed": fn, "false_rejects": fp,
            "self_recall": s_recall, "self_precision": s_precision, "self_missed": s_fn,
            "self_false_rejects": s_fp, "reject_share": levels}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="ours,rensa,rensa-compact,datasketch")
    ap.add_argument("--datasketch-max-n", type=int, default=100_000,
                    help="skip datasketch above this size (it is slow)")
    ap.add_argument("--self-check", action=argparse.BooleanOptionalAction, default=None,
                    help="judge each method against its own kept set too (one more exact "
                         "oracle pass per method; default: on up to n = 200k)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.texts, args.out)
        return

    t0 = time.perf_counter()
    corpus = corpus_mod.generate(args.n, seed=args.seed)
    sets = [corpus_mod.word_set(t) for t in corpus.texts]
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    truth = corpus_mod.oracle_keep_first(sets, THRESHOLD)
    oracle_s = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for it in corpus.items:
        counts[it.kind] = counts.get(it.kind, 0) + 1
    report: dict[str, Any] = {
        "n": args.n, "seed": args.seed, "threshold": THRESHOLD, "num_perm": NUM_PERM,
        "corpus": counts, "oracle_rejects": sum(r >= 0 for r in truth),
        "corpus_seconds": gen_s, "oracle_seconds": oracle_s, "methods": {},
        "cpu": _cpu(), "python": sys.version.split()[0]}
    print(f"corpus n={args.n} seed={args.seed} {counts}; oracle rejects "
          f"{report['oracle_rejects']} (oracle {oracle_s:.1f}s)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        texts_path = Path(tmp) / "texts.json"
        texts_path.write_text(json.dumps(corpus.texts))
        for method in args.methods.split(","):
            if method == "datasketch" and args.n > args.datasketch_max_n:
                continue
            out_path = Path(tmp) / f"{method}.bin"
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", method, "--texts", str(texts_path),
                 "--out", str(out_path)], capture_output=True, text=True,
                env={**os.environ, "PYTHONHASHSEED": "0"})
            if proc.returncode != 0:
                print(f"{method}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            decided = [b == 1 for b in out_path.read_bytes()]
            self_check = args.self_check if args.self_check is not None else args.n <= 200_000
            self_truth = (corpus_mod.oracle_keep_first(sets, THRESHOLD, decided)
                          if self_check else None)
            res.update(metrics(decided, truth, self_truth, corpus.items))
            report["methods"][method] = res
            print(f"  {method}: done in {res['seconds']:.1f}s", flush=True)

    _table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"? x{os.cpu_count()}"


def _table(report: dict[str, Any]) -> None:
    methods = report["methods"]
    base = methods.get("rensa", {}).get("items_per_s")
    head = (f"{'method':<15}{'b x r':>7}{'items/s':>10}{'x rensa':>8}{'peak MB':>9}"
            f"{'B/kept':>8}{'recall':>8}{'prec':>8}{'s.rec':>8}{'s.prec':>8}"
            f"{'exact':>7}{'0.93':>7}{'0.91':>7}{'0.89':>7}{'0.85':>7}")
    print(f"\nn={report['n']} threshold={report['threshold']} ({report['cpu']})")
    print(head)
    for name, r in methods.items():
        rs = r["reject_share"]
        ratio = f"{r['items_per_s'] / base:.2f}" if base else "-"
        print(f"{name:<15}{r['info']['bands']:>3}x{r['info']['rows']:<3}"
              f"{r['items_per_s']:>10,.0f}{ratio:>8}{r['peak_rss_mb']:>9.0f}"
              f"{r['bytes_per_kept_item']:>8.0f}{r['recall']:>8.4f}{r['precision']:>8.4f}"
              + "".join(f"{r[k]:>8.4f}" if r[k] is not None else f"{'-':>8}"
                        for k in ("self_recall", "self_precision"))
              + "".join(f"{rs[k]:>7.3f}" for k in ("exact", "0.93", "0.91", "0.89", "0.85")))
    print("recall/prec: vs the exact greedy oracle; s.rec/s.prec: each decision judged "
          "against the method's own kept set; level columns: share rejected.")


if __name__ == "__main__":
    main()
