"""Seeded generator of persona-like texts with planted duplicates, plus ground truth.

Reusable by the dedup benchmarks. Each text is 15-60 words: a persona opening
("A retired nurse who ...") followed by clauses mixing function words with content
words drawn from a Zipf-distributed synthetic vocabulary and two rare "specifics"
(names of places or works), so unrelated personas share function words and a few
popular content words (word-set Jaccard mostly 0.05-0.3), and personas built on the
same opening and topic overlap more.

Planted items point at an earlier *original* item (base or related; their source):

* ``exact``: the same text, or the same words with other case/punctuation/spacing
  (identical token set, J = 1.0);
* ``near``: words added, removed or replaced so the word-set Jaccard to the source is
  as close as possible to a level in NEAR_LEVELS (0.93, 0.91, 0.89, 0.85) while staying
  on the same side of 0.9 as the level; the achieved J is recorded.

Word sets are those of the engine's tokeniser (NFKC + casefold, ``\\w+`` runs), so the
recorded Jaccard is the true Jaccard of what the dedup stage sees. ``oracle_keep_first``
gives the exact keep-first decisions (prefix-filtered inverted index, then exact sets).
"""

from __future__ import annotations

import heapq
import math
import random
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

NEAR_LEVELS = (0.93, 0.91, 0.89, 0.85)
_WORD = re.compile(r"\w+", re.UNICODE)

_OPENINGS = ["A", "An", "The", "This", "One"]
_ADJ = ["retired", "young", "curious", "seasoned", "ambitious", "part-time", "former",
        "self-taught", "veteran", "aspiring", "busy", "local", "bilingual", "freelance",
        "senior", "junior", "independent", "passionate", "meticulous", "rural", "urban"]
_ROLES = ["nurse", "teacher", "engineer", "chef", "historian", "farmer", "pilot", "lawyer",
          "librarian", "mechanic", "photographer", "biologist", "architect", "journalist",
          "pharmacist", "carpenter", "economist", "translator", "paramedic", "astronomer",
          "software developer", "data scientist", "high school coach", "museum curator",
          "social worker", "game designer", "urban planner", "marine biologist", "midwife",
          "tax accountant", "yoga instructor", "beekeeper", "sommelier", "sound engineer"]
_LINKS = ["who", "that", "and", "with", "in", "of", "for", "on", "to", "about", "the", "a",
          "from", "by", "at", "their", "her", "his", "is", "has", "loves", "enjoys", "works",
          "studies", "writes", "teaches", "helps", "cares", "interested", "focused", "also"]


@dataclass(frozen=True)
class Item:
    """One text of the corpus and how it was made."""

    text: str
    kind: str                 # "base", "related", "exact" or "near"
    source: int = -1          # index of the base item a planted item copies
    level: float = 0.0        # target Jaccard level of a near-duplicate (1.0 for exact)
    jaccard: float = 0.0      # achieved word-set Jaccard to the source


@dataclass
class Corpus:
    """Texts plus their provenance (``items[i].text == texts[i]``)."""

    items: list[Item] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [it.text for it in self.items]


def word_set(text: str) -> frozenset[str]:
    """The token set the dedup stage sees (word 1-grams)."""
    # interned: a million sets share one copy of each word
    return frozenset(map(sys.intern, _WORD.findall(unicodedata.normalize("NFKC", text).casefold())))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Exact Jaccard of two sets; two empty sets count as identical."""
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


_SYLLABLES = ["ka", "lo", "mi", "ren", "to", "sa", "vel", "dor", "an", "is", "qu", "ber",
              "tal", "nes", "cor", "pi", "um", "zen", "ga", "rho", "lix", "mon", "ter", "os"]


class _Vocab:
    """Synthetic content words (syllable strings) with Zipf weights."""

    def __init__(self, rng: random.Random, size: int) -> None:
        syl = _SYLLABLES
        words: set[str] = set()
        while len(words) < size:
            words.add("".join(rng.choice(syl) for _ in range(rng.randint(2, 4))))
        self.words = sorted(words)
        rng.shuffle(self.words)
        acc, self.cum = 0.0, []
        for rank in range(1, size + 1):
            acc += 1.0 / rank**1.05
            self.cum.append(acc)

    def sample(self, rng: random.Random, k: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum, k=k)


def _base_text(rng: random.Random, vocab: _Vocab, start: list[str] | None = None) -> str:
    n_words = rng.randint(15, 60)
    if start is None:
        adj = rng.choice(_ADJ)
        article = rng.choice(_OPENINGS) if adj[0] not in "aeiou" else rng.choice(["An", "The"])
        words = [article, adj, *rng.choice(_ROLES).split()]
    else:
        words = list(start)
    content = vocab.sample(rng, n_words)
    for w in content:
        if len(words) >= n_words:
            break
        if rng.random() < 0.35:
            words.append(rng.choice(_LINKS))
        words.append(w)
    words = words[:n_words - 4]
    # fine-grained personas name specifics (places, works, tools): words from a space
    # of ~8M, so most are rare, as in real persona text
    specifics = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(3, 5))).title()
                 for _ in range(3)]
    words[rng.randrange(3, len(words) + 1):0] = ["in", specifics[0]]
    words[rng.randrange(3, len(words) + 1):0] = [specifics[1]]
    words.append(specifics[2])
    text = " ".join(words)
    # punctuation that the tokeniser drops, for realism
    return text[0].upper() + text[1:].replace(" and ", ", and ", 1) + "."


def _reformat(rng: random.Random, text: str) -> str:
    """Same token set, other surface form."""
    choice = rng.randrange(3)
    if choice == 0:
        return text
    if choice == 1:
        return text.upper()
    return "  " + text.replace(" ", "  ").replace(".", "!") + " "


def _near(rng: random.Random, text: str, level: float, vocab: _Vocab) -> tuple[str, float]:
    """Edit a text's word set to a Jaccard close to ``level``, on level's side of 0.9."""
    words = _WORD.findall(text)  # edit tokens, so the achieved J is the planned one
    src = word_set(text)
    m = len(src)
    # J after adding d new words: m/(m+d); after removing d: (m-d)/m;
    # after replacing d: (m-d)/(m+d). Pick the edit closest to the level.
    options = []
    for d in range(1, m):
        options += [("add", d, m / (m + d)), ("del", d, (m - d) / m),
                    ("rep", d, (m - d) / (m + d))]
    dup_side = level >= 0.9
    options = [o for o in options if (o[2] >= 0.9) == dup_side]
    if not options:
        return text, 1.0
    best = min(abs(o[2] - level) for o in options)
    op, d, _ = rng.choice([o for o in options if abs(o[2] - level) - best < 1e-12])
    out = list(words)
    if op in ("del", "rep"):
        # drop every occurrence of d distinct words (keep at least one word)
        gone = set(rng.sample(sorted(src), d))
        out = [w for w in out if w.casefold() not in gone] or out[:1]
    if op in ("add", "rep"):
        fresh = [w for w in vocab.sample(rng, 4 * d + 8) if w not in src]
        fresh = list(dict.fromkeys(fresh))[:d]
        while len(fresh) < d:  # the Zipf head is exhausted: invent unseen words
            fresh.append(f"zq{rng.randrange(10**9)}")
        for w in fresh:
            out.insert(rng.randrange(len(out) + 1), w)
    new = " ".join(out) + "."
    return new, jaccard(src, word_set(new))


def _related(rng: random.Random, text: str, vocab: _Vocab) -> str:
    """A new persona that starts like an earlier one (30-70% of its words)."""
    words = text.rstrip(".").split()
    keep = max(3, int(len(words) * rng.uniform(0.3, 0.7)))
    return _base_text(rng, vocab, words[:keep])


def generate(n: int, seed: int = 0, exact_share: float = 0.05, near_share: float = 0.15,
             related_share: float = 0.10, vocab_size: int | None = None) -> Corpus:
    """A corpus of ``n`` texts; planted items copy a random earlier original.

    ``related`` items are originals (not duplicates by construction) that reuse the
    start of an earlier one; they give the LSH realistic mid-similarity pairs. The
    content vocabulary is 30k words up to n = 100k and then grows as sqrt(n) (Heaps'
    law), as a real corpus's would.
    """
    rng = random.Random(seed)
    if vocab_size is None:
        vocab_size = int(30_000 * max(1.0, math.sqrt(n / 100_000)))
    vocab = _Vocab(rng, vocab_size)
    corpus = Corpus()
    bases: list[int] = []
    for i in range(n):
        roll = rng.random()
        if bases and roll < exact_share:
            src = rng.choice(bases)
            corpus.items.append(Item(_reformat(rng, corpus.items[src].text), "exact", src,
                                     1.0, 1.0))
        elif bases and roll < exact_share + near_share:
            src = rng.choice(bases)
            level = NEAR_LEVELS[rng.randrange(len(NEAR_LEVELS))]
            text, j = _near(rng, corpus.items[src].text, level, vocab)
            corpus.items.append(Item(text, "near", src, level, j))
        elif bases and roll < exact_share + near_share + related_share:
            src = rng.choice(bases)
            text = _related(rng, corpus.items[src].text, vocab)
            corpus.items.append(Item(text, "related", src, 0.0,
                                     jaccard(word_set(corpus.items[src].text), word_set(text))))
            bases.append(i)
        else:
            corpus.items.append(Item(_base_text(rng, vocab), "base"))
            bases.append(i)
    return corpus


def _prefix_len(size: int, threshold: Fraction) -> int:
    # a pair with J >= t shares a token among the first |X| - ceil(t|X|) + 1 rarest
    return size - math.ceil(threshold * size) + 1 if size else 0


def oracle_keep_first(sets: Sequence[frozenset[str]], threshold: float = 0.9,
                      decisions: Iterable[bool] | None = None) -> list[int]:
    """Exact keep-first dedup: for each item the earliest kept item with J >= t, or -1.

    Without ``decisions`` the oracle keeps what it does not reject (the greedy ground
    truth). With ``decisions`` (True = the method rejected item i) it keeps what the
    method kept, so the answer judges each of the method's decisions against the
    method's own kept set. Candidates come from a prefix-filtered inverted index over
    kept items (exact for Jaccard), then are checked with exact set Jaccard.
    """
    t = Fraction(str(threshold))
    freq: dict[str, int] = {}
    for s in sets:
        for w in s:
            freq[w] = freq.get(w, 0) + 1
    # one global order, rarest first, so that the prefixes are short and selective
    rank = {w: r for r, w in enumerate(sorted(freq, key=lambda w: (freq[w], w)))}
    forced = list(decisions) if decisions is not None else None
    index: dict[str, list[int]] = {}
    out: list[int] = []
    for i, s in enumerate(sets):
        prefix = heapq.nsmallest(_prefix_len(len(s), t), s, key=rank.__getitem__)
        cands: set[int] = set()
        for w in prefix:
            cands.update(index.get(w, ()))
        hit = -1
        for c in sorted(cands):
            other = sets[c]
            small, big = sorted((len(s), len(other)))
            if big and small / big < threshold:  # J <= small/big (as the index filters)
                continue
            if jaccard(s, other) >= threshold:
                hit = c
                break
        if not s and hit < 0:  # empty sets have no prefix; J(empty, empty) = 1
            hit = next((c for c in index.get("", ())), -1)
        out.append(hit)
        rejected = forced[i] if forced is not None else hit >= 0
        if not rejected:
            for w in prefix or [""]:
                index.setdefault(w, []).append(i)
    return out
