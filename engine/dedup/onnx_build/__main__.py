"""Build (or verify) the cached models now: ``python -m engine.dedup.onnx_build [variant ...]``."""

from __future__ import annotations

import json
import logging
import sys

from engine.dedup.onnx_build import VARIANTS, builtin_model
from engine.dedup.onnx_build.cache import CachedFile


def main(argv: list[str]) -> int:
    """Ensure each variant named (default: fp32 and cpu) and print its build record."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    variants = argv or ["fp32", "cpu"]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {unknown}; choose from {VARIANTS}", file=sys.stderr)
        return 2
    for variant in variants:
        path = builtin_model(variant)
        record = CachedFile(path.parent, variant).record()
        print(f"{variant}: {path}\n{json.dumps(record, indent=1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
