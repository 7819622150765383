"""Build hook: compile the Cython kernels in ext/ into the engine package.

Set PERSONA_NO_EXT=1 to skip them (the pure-Python references are used then).
"""

import os
from pathlib import Path

from setuptools import Extension, setup

# ext/<file>.pyx -> importable module
KERNELS = {"ext/minhash.pyx": "engine.dedup._minhash"}


def extensions() -> list[Extension]:
    if os.environ.get("PERSONA_NO_EXT") == "1":
        return []
    from Cython.Build import cythonize

    present = [
        Extension(mod, [src], extra_compile_args=["-O3"])
        for src, mod in KERNELS.items()
        if Path(src).exists()
    ]
    if not present:
        return []
    return cythonize(present, language_level=3, compiler_directives={"boundscheck": False, "wraparound": False})


setup(ext_modules=extensions())
