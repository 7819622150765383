r"""Pure-Python MinHash LSH index: the reference twin of the Cython kernel ``_minhash``.

Definitions shared by both implementations (property tests check they agree bit for
bit; the kernel reuses this module's permutation coefficients and file format):

* tokens: NFKC + casefold, words are ``\w+`` runs (as ``re`` defines ``\w`` for str),
  word n-grams joined by one space (a text with fewer than n words, but at least one,
  is one gram); the token SET.
* token hash: FNV-1a 64 over the gram's UTF-8 bytes, then the murmur3 ``fmix64``
  finaliser (FNV alone mixes its high bits poorly).
* signature: ``h_i(x) = (a_i * (x mod p) + b_i) mod p`` with ``p = 2**61 - 1`` and
  ``a_i, b_i`` from splitmix64 seeded with ``seed``. Only the first ``bands * rows`` of
  the ``num_perm`` permutations are computed: nothing else reads them, because
  candidates are verified by exact Jaccard rather than by a signature estimate (at
  0.9 the default 15 x 7 bands use 105 of 128). The empty set's signature is all
  ``2**64 - 1`` (no real value reaches it).
* band key: ``fmix64`` chained over the band's rows from a per-band start value; the
  high 32 bits are kept. A 32-bit key only adds rare spurious candidates, which exact
  verification rejects, and halves the bucket table.
* query: every item sharing a band key is a candidate; candidates are verified in
  insertion order by EXACT Jaccard of the sorted token hashes and the first with
  ``J >= threshold`` (the earliest kept item) is returned, so results are deterministic.
  ``J(empty, empty) = 1.0``: an empty text duplicates an earlier empty one, and never a
  non-empty one.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
import zlib
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from engine.dedup.lsh_params import choose_params

__all__ = ["MinHashIndex", "Prepared", "jaccard", "encode_tokens", "token_hashes",
           "permutations", "signature", "band_keys", "jaccard_sorted", "EMPTY_SLOT",
           "MERSENNE_61"]

MASK64 = (1 << 64) - 1
MERSENNE_61 = (1 << 61) - 1
EMPTY_SLOT = MASK64  # signature value of the empty set
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
GOLDEN = 0x9E3779B97F4A7C15
FORMAT = "persona-engine/minhash-index"
FORMAT_VERSION = 1
_WORD = re.compile(r"\w+", re.UNICODE)


# ---- front end -------------------------------------------

def grams(text: str, ngram: int = 1) -> list[str]:
    """Word n-grams of a text after NFKC + casefold (may repeat; callers take the set)."""
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    if ngram == 1 or not words:
        return words
    if len(words) < ngram:
        return [" ".join(words)]
    return [" ".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)]


def encode_tokens(text: str, ngram: int = 1) -> bytes:
    """The kernel's input: the grams as UTF-8, separated by newlines (never in a gram)."""
    return "\n".join(grams(text, ngram)).encode("utf-8")


def permutations(num_perm: int, seed: int) -> tuple[list[int], list[int]]:
    """Coefficients (a, b) of the k universal hash functions, from splitmix64(seed)."""
    state = seed & MASK64
    a: list[int] = []
    b: list[int] = []

    def nxt() -> int:
        nonlocal state
        state = (state + GOLDEN) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    for _ in range(num_perm):
        a.append(1 + nxt() % (MERSENNE_61 - 1))
        b.append(nxt() % MERSENNE_61)
    return a, b


# ---- kernel twins -------------------------------------------------------------------

def fmix64(k: int) -> int:
    """murmur3's 64-bit finaliser."""
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    return k ^ (k >> 33)


def hash_token(token: bytes) -> int:
    """64-bit token hash: FNV-1a 64 then fmix64."""
    h = FNV_OFFSET
    for byte in token:
        h = ((h ^ byte) * FNV_PRIME) & MASK64
    return fmix64(h)


def token_hashes(encoded: bytes) -> list[int]:
    """Sorted unique hashes of newline-separated grams (see :func:`encode_tokens`)."""
    if not encoded:
        return []
    return sorted({hash_token(t) for t in encoded.split(b"\n")})


def signature(hashes: list[int], a: list[int], b: list[int]) -> list[int]:
    """MinHash signature: per permutation the minimum of (a*x + b) mod p over the set."""
    if not hashes:
        return [EMPTY_SLOT] * len(a)
    reduced = [x % MERSENNE_61 for x in hashes]
    return [min((ai * x + bi) % MERSENNE_61 for x in reduced) for ai, bi in zip(a, b, strict=True)]


def band_keys(sig: list[int], bands: int, rows: int) -> list[int]:
    """32-bit key of each band of a signature."""
    out = []
    for band in range(bands):
        h = ((band + 1) * GOLDEN) & MASK64
        for v in sig[band * rows:(band + 1) * rows]:
            h = fmix64(h ^ v)
        out.append(h >> 32)
    return out


def jaccard_sorted(x: Any, y: Any) -> float:
    """Exact Jaccard of two sorted unique sequences by merging; J(empty, empty) = 1."""
    i = j = inter = 0
    nx, ny = len(x), len(y)
    if nx == 0 and ny == 0:
        return 1.0
    while i < nx and j < ny:
        if x[i] < y[j]:
            i += 1
        elif x[i] > y[j]:
            j += 1
        else:
            inter += 1
            i += 1
            j += 1
    return inter / (nx + ny - inter)


def jaccard(a: Prepared, b: Prepared) -> float:
    """Exact Jaccard of two prepared texts' token-hash sets."""
    return jaccard_sorted(a.hashes, b.hashes)


# ---- index --------------------------------------------------------------------------

class Prepared:
    """A text hashed for one index configuration: sorted token hashes, signature, keys."""

    __slots__ = ("hashes", "signature", "band_keys", "_config")

    def __init__(self, hashes: tuple[int, ...], sig: tuple[int, ...],
                 keys: tuple[int, ...], config: tuple[int, ...]) -> None:
        self.hashes = hashes
        self.signature = sig
        self.band_keys = keys
        self._config = config

    def __repr__(self) -> str:
        return f"Prepared(tokens={len(self.hashes)}, bands={len(self.band_keys)})"


class MinHashIndex:
    """Streaming keep-first near-duplicate index (pure Python; see the module docstring)."""

    def __init__(self, threshold: float = 0.9, num_perm: int = 128, ngram: int = 1,
                 bands: int | None = None, rows: int | None = None, seed: int = 1) -> None:
        self.bands, self.rows = choose_params(threshold, num_perm, bands, rows)
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram!r}")
        if not 0 <= seed <= MASK64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed!r}")
        self.threshold = float(threshold)
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        # Only the permutations the bands read are computed (see the module docstring).
        self._a, self._b = permutations(self.bands * self.rows, seed)
        self._config = (num_perm, self.bands, self.rows, seed, ngram)
        self._arena = array("Q")
        self._offsets = array("Q", [0])
        self._tables: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]
        self._queries = self._candidates = self._checked = self._duplicates = 0

    def params(self) -> dict[str, Any]:
        """The parameters that define this index (written to and checked on load)."""
        return {"threshold": self.threshold, "num_perm": self.num_perm, "ngram": self.ngram,
                "bands": self.bands, "rows": self.rows, "seed": self.seed}

    def prepare(self, text: str) -> Prepared:
        """Hash a text's tokens and compute its signature and band keys."""
        hashes = token_hashes(encode_tokens(text, self.ngram))
        sig = signature(hashes, self._a, self._b)
        keys = band_keys(sig, self.bands, self.rows)
        return Prepared(tuple(hashes), tuple(sig), tuple(keys), self._config)

    def prepare_many(self, texts: list[str]) -> list[Prepared]:
        """:meth:`prepare` for a batch."""
        return [self.prepare(t) for t in texts]

    def _check(self, item: Prepared) -> None:
        if not isinstance(item, Prepared) or item._config != self._config:
            raise ValueError("item was prepared by an index with other parameters")

    def query(self, item: Prepared) -> tuple[int, float] | None:
        """(position, exact Jaccard) of the earliest kept item with J >= threshold, or None."""
        self._check(item)
        self._queries += 1
        found: set[int] = set()
        for band, key in enumerate(item.band_keys):
            hit = self._tables[band].get(key)
            if hit:
                self._candidates += len(hit)
                found.update(hit)
        n = len(item.hashes)
        off = self._offsets
        for cand in sorted(found):
            lo, hi = off[cand], off[cand + 1]
            m = hi - lo
            # Length filter: J <= min/max, so a lopsided pair cannot reach the threshold
            # (a division, like J's own, so rounding cannot skip a J == threshold pair).
            if m != n and min(n, m) / max(n, m) < self.threshold:
                continue
            self._checked += 1
            j = jaccard_sorted(item.hashes, self._arena[lo:hi])
            if j >= self.threshold:
                self._duplicates += 1
                return cand, j
        return None

    def add(self, item: Prepared) -> int:
        """Insert an item as kept; returns its position (insertion index)."""
        self._check(item)
        pos = len(self._offsets) - 1
        self._arena.extend(item.hashes)
        self._offsets.append(len(self._arena))
        for band, key in enumerate(item.band_keys):
            self._tables[band].setdefault(key, []).append(pos)
        return pos

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def stats(self) -> dict[str, int | float]:
        """Sizes and counters; byte figures count the data, not Python object overhead."""
        n = len(self)
        buckets = sum(len(t) for t in self._tables)
        arena_bytes = 8 * (len(self._arena) + len(self._offsets))
        table_bytes = 8 * buckets + 4 * n * self.bands  # key + list head, one id per entry
        return {"items": n, "bands": self.bands, "rows": self.rows, "buckets": buckets,
                "arena_tokens": len(self._arena), "arena_bytes": arena_bytes,
                "table_bytes": table_bytes, "bytes_per_item": (arena_bytes + table_bytes)
                / n if n else 0.0, "queries": self._queries, "candidates": self._candidates,
                "candidates_checked": self._checked, "duplicates": self._duplicates}

    def _band_key_matrix(self) -> np.ndarray:
        keys = np.zeros((len(self), self.bands), dtype=np.uint32)
        for band, table in enumerate(self._tables):
            for key, ids in table.items():
                keys[ids, band] = key
        return keys

    def save(self, directory: Path) -> None:
        """Write the index to a directory (see :func:`write_index`)."""
        write_index(Path(directory), self.params(), np.frombuffer(self._arena, np.uint64),
                    np.frombuffer(self._offsets, np.uint64), self._band_key_matrix())

    @classmethod
    def load(cls, directory: Path, **expected: Any) -> MinHashIndex:
        """Read an index written by either implementation; ``expected`` params must match."""
        params, arena, offsets, keys = read_index(Path(directory), expected)
        index = cls(**params)
        index._arena = array("Q", arena.tobytes())
        index._offsets = array("Q", offsets.tobytes())
        for band, table in enumerate(index._tables):
            for pos, key in enumerate(keys[:, band].tolist()):
                table.setdefault(key, []).append(pos)
        return index


# ---- file format (shared with the kernel) -------------------------------------------

_FILES = ("arena.npy", "offsets.npy", "band_keys.npy")
_PARAMS = {"threshold", "num_perm", "ngram", "bands", "rows", "seed"}


def _crc(arr: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(arr).data)


def write_index(directory: Path, params: dict[str, Any], arena: np.ndarray,
                offsets: np.ndarray, keys: np.ndarray) -> None:
    """Write header.json + three .npy files; the caller makes the directory durable."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = dict(zip(_FILES, (arena, offsets, keys), strict=True))
    for name, arr in arrays.items():
        np.save(directory / name, arr, allow_pickle=False)
    header = {"format": FORMAT, "version": FORMAT_VERSION, "params": params,
              "items": int(len(offsets) - 1), "arena_tokens": int(len(arena)),
              "crc32": {name: _crc(arr) for name, arr in arrays.items()}}
    tmp = directory / "header.json.tmp"
    tmp.write_text(json.dumps(header, indent=1, sort_keys=True))
    os.replace(tmp, directory / "header.json")  # the header names a complete set of files


def _corrupt(directory: Path, why: str) -> ValueError:
    return ValueError(f"corrupt or mismatched minhash index at {directory}: {why}")


def read_index(directory: Path, expected: dict[str, Any]
               ) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """Read and verify a saved index: (params, arena, offsets, band_keys)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"no minhash index directory at {directory}")
    unknown = set(expected) - _PARAMS
    if unknown:
        raise TypeError(f"unknown index parameters {sorted(unknown)}")
    try:
        header = json.loads((directory / "header.json").read_text())
        fmt, version = header["format"], header["version"]
        params, n, tokens, crcs = (header["params"], int(header["items"]),
                                   int(header["arena_tokens"]), header["crc32"])
        arrays = [np.load(directory / name, allow_pickle=False) for name in _FILES]
    except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise _corrupt(directory, f"{type(exc).__name__}: {exc}") from exc
    if fmt != FORMAT or version != FORMAT_VERSION:
        raise _corrupt(directory, f"unknown format {fmt!r} version {version!r}")
    if not isinstance(params, dict) or set(params) != _PARAMS or not isinstance(crcs, dict):
        raise _corrupt(directory, f"bad params {params!r}")
    try:  # the same checks the constructor makes, reported as corruption
        if choose_params(params["threshold"], params["num_perm"], params["bands"],
                         params["rows"]) != (params["bands"], params["rows"]):
            raise ValueError("bands/rows")
        if not (isinstance(params["ngram"], int) and params["ngram"] >= 1
                and isinstance(params["seed"], int) and 0 <= params["seed"] <= MASK64):
            raise ValueError("ngram/seed")
    except (ValueError, TypeError) as exc:
        raise _corrupt(directory, f"invalid params {params!r}: {exc}") from exc
    for key, value in expected.items():
        if params[key] != value:
            raise _corrupt(directory, f"{key} is {params[key]!r}, expected {value!r}")
    arena, offsets, keys = arrays
    if (arena.dtype != np.uint64 or offsets.dtype != np.uint64 or keys.dtype != np.uint32
            or arena.shape != (tokens,) or offsets.shape != (n + 1,)
            or keys.shape != (n, params["bands"])):
        raise _corrupt(directory, "array dtype or shape does not match the header")
    for name, arr in zip(_FILES, arrays, strict=True):
        if _crc(arr) != crcs.get(name):
            raise _corrupt(directory, f"checksum mismatch in {name}")
    if offsets[0] != 0 or offsets[-1] != len(arena) or np.any(offsets[1:] < offsets[:-1]):
        raise _corrupt(directory, "offsets are not a monotone cover of the arena")
    return params, arena, offsets, keys
