"""MinHash near-duplicate index: the Cython kernel, or its pure-Python twin.

``MinHashIndex`` comes from the compiled ``engine.dedup._minhash`` unless the
environment sets ``PERSONA_PURE_PYTHON=1`` or the extension is not built; then it comes
from ``engine.dedup._minhash_ref``. Both make the same decisions bit for bit (see
``_minhash_ref``'s docstring for the definitions and ``lsh_params`` for the band
choice). ``IMPLEMENTATION`` says which one was loaded ("cython" or "python").
"""

from __future__ import annotations

import os

from engine.dedup.lsh_params import optimal_params, recall_params

__all__ = ["IMPLEMENTATION", "MinHashIndex", "Prepared", "jaccard", "optimal_params",
           "recall_params"]

_PURE = os.environ.get("PERSONA_PURE_PYTHON", "") not in ("", "0")

if not _PURE:
    try:
        from engine.dedup._minhash import MinHashIndex, Prepared, jaccard
    except ImportError:  # extension not built (PERSONA_NO_EXT=1, no compiler): use the twin
        _PURE = True

if _PURE:
    from engine.dedup._minhash_ref import (  # type: ignore[assignment]
        MinHashIndex,
        Prepared,
        jaccard,
    )

IMPLEMENTATION = "python" if _PURE else "cython"
