# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""MinHash LSH index kernel (module ``engine.dedup._minhash``).

The definitions (tokens, hashes, signature, band keys, keep-first query) are those of
the pure-Python twin ``engine.dedup._minhash_ref``; this module takes its permutation
coefficients and file format from there and does the rest in C: after NFKC + casefold
(str methods), words are found by ``Py_UNICODE_ISALNUM or '_'`` (what ``re`` uses for
``\\w``) and hashed as UTF-8 without building token strings.

Memory layout, no Python object per kept item:
* arena: one growable uint64 array of every kept item's sorted unique token hashes,
  with a uint64 offsets array (n + 1 entries);
* per band an open-addressing table of 8-byte slots (32-bit band key, 32-bit chain
  head = item + 1), load <= 0.75, and one uint32 ``next`` link per (item, band).

The GIL is released only where the work is long enough to pay for it (batches in
``prepare_many``, big candidate sets in ``query``): dropping it for a few microseconds
invites the convoy effect, where a busy thread keeps the GIL for a whole switch
interval. A ``busy`` flag turns concurrent use of one index into a RuntimeError
instead of a use-after-free.
"""

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort, realloc
from libc.string cimport memcpy

import unicodedata
from pathlib import Path

import numpy as np

from engine.dedup._minhash_ref import permutations, read_index, write_index
from engine.dedup.lsh_params import choose_params

cdef extern from *:
    """
    #include <stdint.h>
    #define PE_P61 ((uint64_t)0x1FFFFFFFFFFFFFFFULL)
    static inline uint64_t pe_reduce61(uint64_t x) {
        uint64_t r = (x & PE_P61) + (x >> 61);
        return r >= PE_P61 ? r - PE_P61 : r;
    }
    /* MinHash signature, vectorisable across permutations: a*x mod p from four
       32x32->64 products (x and a < 2^61), so SIMD units without a 64x64->128
       multiply still apply; the sum stays below 2^64 and is reduced exactly. The
       compiler clones it for AVX2 / AVX-512 and picks one at load time. */
    #if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
    #define PE_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
    #else
    #define PE_CLONES
    #endif
    PE_CLONES
    static void pe_signature(const uint64_t *xs, size_t n, const uint32_t *a0,
                             const uint32_t *a1, const uint64_t *b, size_t k,
                             uint64_t *sig) {
        size_t t, j;
        if (n == 0) {
            for (j = 0; j < k; j++) sig[j] = 0xFFFFFFFFFFFFFFFFULL;
            return;
        }
        for (j = 0; j < k; j++) sig[j] = PE_P61;  /* above every reduced value */
        for (t = 0; t < n; t++) {
            const uint64_t x0 = xs[t] & 0xFFFFFFFFu, x1 = xs[t] >> 32;
            for (j = 0; j < k; j++) {
                const uint64_t hh = (uint64_t)a1[j] * x1;               /* < 2^58 */
                const uint64_t mid = (uint64_t)a1[j] * x0 + (uint64_t)a0[j] * x1; /* < 2^62 */
                const uint64_t ll = (uint64_t)a0[j] * x0;
                /* 2^64 = 8, 2^61 = 1 (mod p) */
                uint64_t s = (hh << 3) + (mid >> 29) + ((mid & 0x1FFFFFFFu) << 32)
                             + (ll & PE_P61) + (ll >> 61) + b[j];
                s = (s & PE_P61) + (s >> 61);
                s = s >= PE_P61 ? s - PE_P61 : s;
                sig[j] = s < sig[j] ? s : sig[j];
            }
        }
    }
    /* Sort for token-hash sets (tens of values): quicksort with an inlined compare,
       insertion sort below 16; recursion on the smaller side bounds the depth. */
    static void pe_sort_u64(uint64_t *v, size_t n) {
        while (n > 16) {
            uint64_t a = v[0], b = v[n / 2], c = v[n - 1], pivot, tmp;
            pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
            size_t i = 0, j = n - 1;
            for (;;) {
                while (v[i] < pivot) i++;
                while (v[j] > pivot) j--;
                if (i >= j) break;
                tmp = v[i]; v[i] = v[j]; v[j] = tmp;
                i++; j--;
            }
            /* v[0..j] <= pivot <= v[j+1..n) */
            if (j + 1 < n - j - 1) { pe_sort_u64(v, j + 1); v += j + 1; n -= j + 1; }
            else { pe_sort_u64(v + j + 1, n - j - 1); n = j + 1; }
        }
        for (size_t i = 1; i < n; i++) {
            uint64_t x = v[i];
            size_t j = i;
            while (j > 0 && v[j - 1] > x) { v[j] = v[j - 1]; j--; }
            v[j] = x;
        }
    }
    static inline uint64_t pe_fmix64(uint64_t k) {
        k ^= k >> 33; k *= 0xFF51AFD7ED558CCDULL;
        k ^= k >> 33; k *= 0xC4CEB9FE1A85EC53ULL;
        return k ^ (k >> 33);
    }
    #if defined(__GNUC__) || defined(__clang__)
    #define pe_prefetch(p) __builtin_prefetch(p)
    #else
    #define pe_prefetch(p) ((void)0)
    #endif
    #define PE_FNV_OFFSET 0xCBF29CE484222325ULL
    #define PE_FNV_PRIME 0x100000001B3ULL
    #define PE_GOLDEN 0x9E3779B97F4A7C15ULL
    #define PE_EMPTY_SLOT 0xFFFFFFFFFFFFFFFFULL
    """
    const uint64_t FNV_OFFSET "PE_FNV_OFFSET"
    const uint64_t FNV_PRIME "PE_FNV_PRIME"
    const uint64_t GOLDEN "PE_GOLDEN"
    const uint64_t EMPTY_SLOT "PE_EMPTY_SLOT"
    uint64_t pe_reduce61(uint64_t x) noexcept nogil
    uint64_t pe_fmix64(uint64_t k) noexcept nogil
    void pe_sort_u64(uint64_t* v, size_t n) noexcept nogil
    void pe_prefetch(const void* p) noexcept nogil
    void pe_signature(const uint64_t* xs, size_t n, const uint32_t* a0, const uint32_t* a1,
                      const uint64_t* b, size_t k, uint64_t* sig) noexcept nogil

cdef extern from "Python.h":
    Py_UCS4 pe_read "PyUnicode_READ"(int kind, const void* data, Py_ssize_t i) noexcept nogil
    bint pe_isalnum "Py_UNICODE_ISALNUM"(Py_UCS4 ch) noexcept nogil
    int pe_kind "PyUnicode_KIND"(object s)
    const void* pe_data "PyUnicode_DATA"(object s)

cdef enum:
    NOGIL_MIN_BATCH = 16      # prepare_many releases the GIL from this many texts
    NOGIL_MIN_CANDS = 256     # query releases the GIL from this many candidates
    MAX_ITEMS = 0x7FFFFFFF    # chain heads are item + 1 in a uint32
    TABLE_INIT = 1024


ctypedef struct Slot:
    uint32_t key
    uint32_t head        # item + 1 of the newest item with this key; 0 = empty slot

ctypedef struct Table:
    Slot* slots
    size_t mask
    size_t used


# ---- per-text work (nogil) ----------------------------------------------------------

cdef int _cmp_u32(const void* x, const void* y) noexcept nogil:
    cdef uint32_t a = (<const uint32_t*>x)[0], b = (<const uint32_t*>y)[0]
    return (a > b) - (a < b)


cdef Py_ssize_t _sort_unique_u64(uint64_t* v, Py_ssize_t n) noexcept nogil:
    """Sort in place and drop repeats; returns the new length."""
    cdef Py_ssize_t i, out
    if n == 0:
        return 0
    pe_sort_u64(v, n)
    out = 1
    for i in range(1, n):
        if v[i] != v[out - 1]:
            v[out] = v[i]
            out += 1
    return out


# \w as Python's re defines it for str patterns: Py_UNICODE_ISALNUM or '_'
cdef unsigned char _WORD_LATIN1[256]
for _c in range(256):
    _WORD_LATIN1[_c] = pe_isalnum(_c) or _c == 95


cdef inline bint _is_word(Py_UCS4 ch) noexcept nogil:
    return _WORD_LATIN1[ch] if ch < 256 else pe_isalnum(ch)


cdef inline uint64_t _fnv_utf8(uint64_t h, Py_UCS4 ch) noexcept nogil:
    """Fold one code point, as its UTF-8 bytes, into an FNV-1a 64 state."""
    cdef uint64_t c = <uint64_t>ch
    if c < 0x80:
        return (h ^ c) * FNV_PRIME
    if c < 0x800:
        h = (h ^ (0xC0 | (c >> 6))) * FNV_PRIME
    else:
        if c < 0x10000:
            h = (h ^ (0xE0 | (c >> 12))) * FNV_PRIME
        else:
            h = (h ^ (0xF0 | (c >> 18))) * FNV_PRIME
            h = (h ^ (0x80 | ((c >> 12) & 0x3F))) * FNV_PRIME
        h = (h ^ (0x80 | ((c >> 6) & 0x3F))) * FNV_PRIME
    return (h ^ (0x80 | (c & 0x3F))) * FNV_PRIME


cdef uint64_t _hash_span(int kind, const void* data, const Py_ssize_t* bounds,
                         Py_ssize_t first, Py_ssize_t last) noexcept nogil:
    """Hash of the gram made of words first..last-1 joined by single spaces."""
    cdef Py_ssize_t w, i
    cdef uint64_t h = FNV_OFFSET
    for w in range(first, last):
        if w > first:
            h = (h ^ 32) * FNV_PRIME
        for i in range(bounds[2 * w], bounds[2 * w + 1]):
            h = _fnv_utf8(h, pe_read(kind, data, i))
    return pe_fmix64(h)


cdef Py_ssize_t _hash_words(int kind, const void* data, Py_ssize_t length, int ngram,
                            uint64_t* out, Py_ssize_t* bounds) noexcept nogil:
    """Sorted unique hashes of the word n-grams of a normalised str (\\w+ runs).

    ``out`` holds (length + 1) // 2 values (the most words a str can have); ``bounds``
    holds length + 2, used for ngram > 1 only.
    """
    cdef Py_ssize_t i, n = 0, nw = 0
    cdef Py_UCS4 ch
    cdef uint64_t h = FNV_OFFSET
    cdef bint inword = False, w
    if ngram == 1:  # hash while scanning: no word list needed
        for i in range(length):
            ch = pe_read(kind, data, i)
            if _is_word(ch):
                h = _fnv_utf8(h, ch)
                inword = True
            elif inword:
                out[n] = pe_fmix64(h)
                n += 1
                h = FNV_OFFSET
                inword = False
        if inword:
            out[n] = pe_fmix64(h)
            n += 1
        return _sort_unique_u64(out, n)
    for i in range(length):
        w = _is_word(pe_read(kind, data, i))
        if w and not inword:
            bounds[2 * nw] = i
        elif inword and not w:
            bounds[2 * nw + 1] = i
            nw += 1
        inword = w
    if inword:
        bounds[2 * nw + 1] = length
        nw += 1
    if nw == 0:
        return 0
    if nw < ngram:
        out[0] = _hash_span(kind, data, bounds, 0, nw)
        return 1
    for i in range(nw - ngram + 1):
        out[i] = _hash_span(kind, data, bounds, i, i + ngram)
    return _sort_unique_u64(out, nw - ngram + 1)


cdef void _signature(uint64_t* hashes, Py_ssize_t n, const uint32_t* a0, const uint32_t* a1,
                     const uint64_t* pb, Py_ssize_t k, uint64_t* sig) noexcept nogil:
    """sig[j] = min over the set of (a_j * (x mod p) + b_j) mod p; all-ones when empty."""
    cdef Py_ssize_t t0, t, m
    cdef uint64_t xs[64]  # reduced token values, in blocks that stay in L1
    if n == 0:
        pe_signature(xs, 0, a0, a1, pb, k, sig)
        return
    for t0 in range(0, n, 64):
        m = min(64, n - t0)
        for t in range(m):
            xs[t] = pe_reduce61(hashes[t0 + t])
        if t0 == 0:
            pe_signature(xs, m, a0, a1, pb, k, sig)
        else:
            _signature_more(xs, m, a0, a1, pb, k, sig)


cdef void _signature_more(const uint64_t* xs, Py_ssize_t m, const uint32_t* a0,
                          const uint32_t* a1, const uint64_t* pb, Py_ssize_t k,
                          uint64_t* sig) noexcept nogil:
    """Fold a further block of tokens into a signature (texts with > 64 tokens)."""
    cdef uint64_t tmp[4096]
    cdef Py_ssize_t j
    pe_signature(xs, m, a0, a1, pb, k, tmp)
    for j in range(k):
        if tmp[j] < sig[j]:
            sig[j] = tmp[j]


cdef void _band_keys(const uint64_t* sig, Py_ssize_t bands, Py_ssize_t rows,
                     uint32_t* keys) noexcept nogil:
    cdef Py_ssize_t band, r
    cdef uint64_t h
    for band in range(bands):
        h = <uint64_t>(band + 1) * GOLDEN
        for r in range(rows):
            h = pe_fmix64(h ^ sig[band * rows + r])
        keys[band] = <uint32_t>(h >> 32)


cdef double _jaccard(const uint64_t* x, Py_ssize_t nx, const uint64_t* y,
                     Py_ssize_t ny) noexcept nogil:
    """Exact Jaccard of two sorted unique arrays by merging; J(empty, empty) = 1."""
    cdef Py_ssize_t i = 0, j = 0, inter = 0
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
    return <double>inter / <double>(nx + ny - inter)


# ---- prepared items -----------------------------------------------------------------

cdef class Prepared:
    """A text hashed for one index configuration: sorted token hashes, signature, keys."""

    cdef uint64_t* sig          # one block: sig[k] | hashes[cap] | keys[bands] (uint32)
    cdef uint64_t* hashes_
    cdef uint32_t* keys
    cdef Py_ssize_t n, k, nb
    cdef object config

    def __dealloc__(self):
        free(self.sig)

    @property
    def hashes(self):
        return tuple([self.hashes_[i] for i in range(self.n)])

    @property
    def signature(self):
        return tuple([self.sig[i] for i in range(self.k)])

    @property
    def band_keys(self):
        return tuple([self.keys[i] for i in range(self.nb)])

    def __repr__(self):
        return f"Prepared(tokens={self.n}, bands={self.nb})"


cdef Prepared _new_prepared(Py_ssize_t cap, Py_ssize_t k, Py_ssize_t nb, object config):
    """An empty Prepared with room for ``cap`` token hashes."""
    cdef Prepared p = Prepared.__new__(Prepared)
    p.sig = <uint64_t*>malloc(sizeof(uint64_t) * (k + cap) + sizeof(uint32_t) * nb + 8)
    if p.sig == NULL:
        raise MemoryError()
    p.hashes_ = p.sig + k
    p.keys = <uint32_t*>(p.hashes_ + cap)
    p.k, p.nb, p.n, p.config = k, nb, 0, config
    return p


_normalize = unicodedata.normalize


def jaccard(Prepared a not None, Prepared b not None):
    """Exact Jaccard of two prepared texts' token-hash sets."""
    return _jaccard(a.hashes_, a.n, b.hashes_, b.n)


# ---- the index ----------------------------------------------------------------------

cdef class MinHashIndex:
    """Streaming keep-first near-duplicate index (C kernel; see the module docstring)."""

    cdef readonly int bands, rows, num_perm, ngram
    cdef int k                  # permutations computed: bands * rows <= num_perm
    cdef readonly object seed
    cdef readonly double threshold
    cdef object config
    cdef uint32_t* a0           # permutation multipliers a = a1 * 2^32 + a0
    cdef uint32_t* a1
    cdef uint64_t* pb
    cdef uint64_t* arena
    cdef size_t arena_len, arena_cap
    cdef uint64_t* offsets      # items_cap + 1 entries
    cdef uint32_t* nxt          # items_cap * bands chain links (item + 1; 0 = end)
    cdef size_t n_items, items_cap
    cdef Table* tables
    cdef uint32_t* cand
    cdef size_t cand_cap, candidates_len
    cdef unsigned long long queries, candidates, checked, duplicates
    cdef bint busy

    def __cinit__(self):
        self.a0 = self.a1 = NULL
        self.pb = self.arena = self.offsets = NULL
        self.nxt = self.cand = NULL
        self.tables = NULL

    def __init__(self, double threshold=0.9, int num_perm=128, int ngram=1, bands=None,
                 rows=None, seed=1):
        cdef int band, i
        if self.tables != NULL:
            raise RuntimeError("MinHashIndex.__init__ called twice")
        self.bands, self.rows = choose_params(threshold, num_perm, bands, rows)
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram!r}")
        if not 0 <= seed <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError(f"seed must be in [0, 2**64), got {seed!r}")
        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        self.config = (num_perm, self.bands, self.rows, seed, ngram)
        self.k = self.bands * self.rows
        a, b = permutations(self.k, seed)
        self.a0 = <uint32_t*>malloc(sizeof(uint32_t) * self.k)
        self.a1 = <uint32_t*>malloc(sizeof(uint32_t) * self.k)
        self.pb = <uint64_t*>malloc(sizeof(uint64_t) * self.k)
        self.tables = <Table*>calloc(self.bands, sizeof(Table))
        self.offsets = <uint64_t*>malloc(sizeof(uint64_t))
        if (self.a0 == NULL or self.a1 == NULL or self.pb == NULL or self.tables == NULL
                or self.offsets == NULL):
            raise MemoryError()
        for i in range(self.k):
            self.a0[i], self.a1[i], self.pb[i] = a[i] & 0xFFFFFFFF, a[i] >> 32, b[i]
        self.offsets[0] = 0
        for band in range(self.bands):
            self.tables[band].slots = <Slot*>calloc(TABLE_INIT, sizeof(Slot))
            if self.tables[band].slots == NULL:
                raise MemoryError()
            self.tables[band].mask = TABLE_INIT - 1

    def __dealloc__(self):
        cdef int band
        if self.tables != NULL:
            for band in range(self.bands):
                free(self.tables[band].slots)
            free(self.tables)
        free(self.a0)
        free(self.a1)
        free(self.pb)
        free(self.arena)
        free(self.offsets)
        free(self.nxt)
        free(self.cand)

    def params(self):
        """The parameters that define this index (written to and checked on load)."""
        return {"threshold": self.threshold, "num_perm": self.num_perm, "ngram": self.ngram,
                "bands": self.bands, "rows": self.rows, "seed": self.seed}

    # -- prepare --

    cdef inline void _compute(self, Prepared p, int kind, const void* data, Py_ssize_t length,
                              Py_ssize_t* bounds) noexcept nogil:
        p.n = _hash_words(kind, data, length, self.ngram, p.hashes_, bounds)
        _signature(p.hashes_, p.n, self.a0, self.a1, self.pb, self.k, p.sig)
        _band_keys(p.sig, self.bands, self.rows, p.keys)

    def prepare(self, str text):
        """Hash a text's tokens and compute its signature and band keys."""
        cdef str s = _normalize("NFKC", text).casefold()
        cdef Py_ssize_t length = len(s)
        cdef Prepared p = _new_prepared((length + 1) // 2, self.k, self.bands,
                                        self.config)
        cdef Py_ssize_t* bounds = NULL
        if self.ngram > 1:
            bounds = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (length + 2))
            if bounds == NULL:
                raise MemoryError()
        self._compute(p, pe_kind(s), pe_data(s), length, bounds)
        free(bounds)
        return p

    def prepare_many(self, list texts):
        """:meth:`prepare` for a batch; the hashing runs without the GIL."""
        cdef Py_ssize_t i, n = len(texts), longest = 0
        cdef list strs = [_normalize("NFKC", t).casefold() for t in texts]
        cdef list out = [None] * n
        cdef const void** data = <const void**>malloc(sizeof(void*) * (n + 1))
        cdef Py_ssize_t* lengths = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (n + 1))
        cdef int* kinds = <int*>malloc(sizeof(int) * (n + 1))
        cdef void** items = <void**>malloc(sizeof(void*) * (n + 1))
        cdef Py_ssize_t* bounds = NULL
        try:
            if data == NULL or lengths == NULL or kinds == NULL or items == NULL:
                raise MemoryError()
            for i in range(n):
                s = strs[i]
                lengths[i] = len(s)
                longest = max(longest, lengths[i])
                kinds[i], data[i] = pe_kind(s), pe_data(s)
                out[i] = _new_prepared((lengths[i] + 1) // 2, self.k, self.bands,
                                       self.config)
                items[i] = <void*>out[i]
            if self.ngram > 1:
                bounds = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (longest + 2))
                if bounds == NULL:
                    raise MemoryError()
            if n >= NOGIL_MIN_BATCH:
                with nogil:
                    for i in range(n):
                        self._compute(<Prepared>items[i], kinds[i], data[i], lengths[i], bounds)
            else:
                for i in range(n):
                    self._compute(<Prepared>items[i], kinds[i], data[i], lengths[i], bounds)
        finally:
            free(data); free(lengths); free(kinds); free(items); free(bounds)
        return out

    # -- query / add --

    cdef int _enter(self, Prepared item) except -1:
        if self.busy:
            raise RuntimeError("MinHashIndex used from two threads at once")
        if item.config is not self.config and item.config != self.config:
            raise ValueError("item was prepared by an index with other parameters")
        return 0

    cdef int _push_cand(self, uint32_t c) except -1:
        cdef size_t cap
        cdef uint32_t* grown
        if self.candidates_len == self.cand_cap:
            cap = self.cand_cap * 2 if self.cand_cap else 256
            grown = <uint32_t*>realloc(self.cand, sizeof(uint32_t) * cap)
            if grown == NULL:
                raise MemoryError()
            self.cand, self.cand_cap = grown, cap
        self.cand[self.candidates_len] = c
        self.candidates_len += 1
        return 0

    cdef Py_ssize_t _verify(self, Prepared item, size_t ncand, double* best) noexcept nogil:
        """First candidate (ascending position) with exact J >= threshold, or -1."""
        cdef size_t i, c
        cdef Py_ssize_t m, lo, small, big
        cdef double j
        for i in range(ncand):
            c = self.cand[i]
            lo = self.offsets[c]
            m = self.offsets[c + 1] - lo
            if m < item.n:
                small, big = m, item.n
            else:
                small, big = item.n, m
            # J <= small / big, so a lopsided pair cannot reach the threshold (a division,
            # like J's own, so rounding cannot skip a pair with J == threshold)
            if small != big and <double>small / <double>big < self.threshold:
                continue
            self.checked += 1
            j = _jaccard(item.hashes_, item.n, self.arena + lo, m)
            if j >= self.threshold:
                best[0] = j
                return c
        return -1

    def query(self, Prepared item not None):
        """(position, exact Jaccard) of the earliest kept item with J >= threshold, or None."""
        cdef int band
        cdef Table* t
        cdef size_t i, n_unique, ncand
        cdef uint32_t it, key
        cdef Py_ssize_t found
        cdef double best = 0.0
        self._enter(item)
        self.queries += 1
        self.candidates_len = 0
        # one cache miss per band table: issue them all before probing any
        for band in range(self.bands):
            t = &self.tables[band]
            pe_prefetch(&t.slots[item.keys[band] & t.mask])
        for band in range(self.bands):
            t = &self.tables[band]
            key = item.keys[band]
            i = key & t.mask
            while t.slots[i].head != 0:
                if t.slots[i].key == key:
                    it = t.slots[i].head
                    while it != 0:
                        self._push_cand(it - 1)
                        it = self.nxt[<size_t>(it - 1) * self.bands + band]
                    break
                i = (i + 1) & t.mask
        ncand = self.candidates_len
        if ncand == 0:
            return None
        self.candidates += ncand
        qsort(self.cand, ncand, sizeof(uint32_t), _cmp_u32)
        n_unique = 1
        for i in range(1, ncand):
            if self.cand[i] != self.cand[n_unique - 1]:
                self.cand[n_unique] = self.cand[i]
                n_unique += 1
        if n_unique >= NOGIL_MIN_CANDS:
            self.busy = True
            try:
                with nogil:
                    found = self._verify(item, n_unique, &best)
            finally:
                self.busy = False
        else:
            found = self._verify(item, n_unique, &best)
        if found < 0:
            return None
        self.duplicates += 1
        return (found, best)

    cdef int _reserve_items(self, size_t need) except -1:
        cdef size_t cap
        cdef uint64_t* off
        cdef uint32_t* nx
        if need <= self.items_cap:
            return 0
        if need > MAX_ITEMS:
            raise OverflowError(f"a MinHashIndex holds at most {MAX_ITEMS} items")
        cap = max(need, self.items_cap + self.items_cap // 2, 1024)
        off = <uint64_t*>realloc(self.offsets, sizeof(uint64_t) * (cap + 1))
        if off == NULL:
            raise MemoryError()
        self.offsets = off
        nx = <uint32_t*>realloc(self.nxt, sizeof(uint32_t) * cap * self.bands)
        if nx == NULL:
            raise MemoryError()
        self.nxt, self.items_cap = nx, cap
        return 0

    cdef int _reserve_arena(self, size_t need) except -1:
        cdef size_t cap
        cdef uint64_t* grown
        if need <= self.arena_cap:
            return 0
        cap = max(need, self.arena_cap + self.arena_cap // 2, 16384)
        grown = <uint64_t*>realloc(self.arena, sizeof(uint64_t) * cap)
        if grown == NULL:
            raise MemoryError()
        self.arena, self.arena_cap = grown, cap
        return 0

    cdef int _grow_table(self, Table* t) except -1:
        cdef size_t i, j, cap = (t.mask + 1) * 2
        cdef Slot* slots = <Slot*>calloc(cap, sizeof(Slot))
        if slots == NULL:
            raise MemoryError()
        for i in range(t.mask + 1):
            if t.slots[i].head != 0:
                j = t.slots[i].key & (cap - 1)
                while slots[j].head != 0:
                    j = (j + 1) & (cap - 1)
                slots[j] = t.slots[i]
        free(t.slots)
        t.slots, t.mask = slots, cap - 1
        return 0

    cdef int _link(self, int band, uint32_t key, size_t pos) except -1:
        """Put item ``pos`` at the head of its band bucket (chains are newest first)."""
        cdef Table* t = &self.tables[band]
        cdef size_t i = key & t.mask
        while t.slots[i].head != 0 and t.slots[i].key != key:
            i = (i + 1) & t.mask
        self.nxt[pos * self.bands + band] = t.slots[i].head
        if t.slots[i].head == 0:
            t.slots[i].key = key
            t.used += 1
        t.slots[i].head = <uint32_t>(pos + 1)
        if t.used * 4 > (t.mask + 1) * 3:
            self._grow_table(t)
        return 0

    def add(self, Prepared item not None):
        """Insert an item as kept; returns its position (insertion index)."""
        cdef int band
        cdef size_t pos = self.n_items
        self._enter(item)
        self._reserve_items(pos + 1)
        self._reserve_arena(self.arena_len + item.n)
        memcpy(self.arena + self.arena_len, item.hashes_, sizeof(uint64_t) * item.n)
        self.arena_len += item.n
        self.offsets[pos + 1] = self.arena_len
        for band in range(self.bands):
            self._link(band, item.keys[band], pos)
        self.n_items = pos + 1
        return pos

    def __len__(self):
        return self.n_items

    def stats(self):
        """Sizes (allocated bytes) and counters."""
        cdef int band
        cdef size_t buckets = 0, slots = 0
        for band in range(self.bands):
            buckets += self.tables[band].used
            slots += self.tables[band].mask + 1
        arena_bytes = 8 * (self.arena_cap + self.items_cap + 1)
        table_bytes = 8 * slots + 4 * self.items_cap * self.bands
        n = self.n_items
        return {"items": n, "bands": self.bands, "rows": self.rows, "buckets": buckets,
                "arena_tokens": self.arena_len, "arena_bytes": arena_bytes,
                "table_bytes": table_bytes,
                "bytes_per_item": (arena_bytes + table_bytes) / n if n else 0.0,
                "queries": self.queries, "candidates": self.candidates,
                "candidates_checked": self.checked, "duplicates": self.duplicates}

    # -- persistence --

    def save(self, directory):
        """Write the index to a directory (format of ``_minhash_ref.write_index``)."""
        cdef size_t i, n = self.n_items
        cdef int band
        cdef uint32_t it
        cdef Table* t
        if self.busy:
            raise RuntimeError("MinHashIndex used from two threads at once")
        arena = np.empty(self.arena_len, dtype=np.uint64)
        offsets = np.empty(n + 1, dtype=np.uint64)
        keys = np.zeros((n, self.bands), dtype=np.uint32)
        cdef uint64_t[::1] av = arena
        cdef uint64_t[::1] ov = offsets
        cdef uint32_t[:, ::1] kv = keys
        if self.arena_len:
            memcpy(&av[0], self.arena, sizeof(uint64_t) * self.arena_len)
        memcpy(&ov[0], self.offsets, sizeof(uint64_t) * (n + 1))
        for band in range(self.bands):
            t = &self.tables[band]
            for i in range(t.mask + 1):
                it = t.slots[i].head
                while it != 0:
                    kv[it - 1, band] = t.slots[i].key
                    it = self.nxt[<size_t>(it - 1) * self.bands + band]
        write_index(Path(directory), self.params(), arena, offsets, keys)

    @classmethod
    def load(cls, directory, **expected):
        """Read an index written by either implementation; ``expected`` params must match."""
        cdef MinHashIndex index
        cdef size_t i, n
        cdef int band
        params, arena, offsets, keys = read_index(Path(directory), expected)
        index = cls(**params)
        n = len(offsets) - 1
        cdef const uint64_t[::1] av = np.ascontiguousarray(arena)
        cdef const uint64_t[::1] ov = np.ascontiguousarray(offsets)
        cdef const uint32_t[:, ::1] kv = np.ascontiguousarray(keys)
        index._reserve_items(n)
        index._reserve_arena(len(arena))
        if len(arena):
            memcpy(index.arena, &av[0], sizeof(uint64_t) * len(arena))
        memcpy(index.offsets, &ov[0], sizeof(uint64_t) * (n + 1))
        index.arena_len = len(arena)
        for i in range(n):
            for band in range(index.bands):
                index._link(band, kv[i, band], i)
        index.n_items = n
        return index
