"""all-MiniLM-L6-v2 built by us from its safetensors weights, without torch, and cached.

Variants (``builtin_model(variant)``):

- ``"cpu"``: the fastest faithful CPU model (int8, see recipe.py; fp32 if int8 ever
  misses the fidelity bounds at build time);
- ``"cuda"``: fp16 with fused attention for the CUDA provider;
- ``"fp32"``: the plain fp32 graph, the reference the others are measured against.

Each is built on first use (or by ``python -m engine.dedup.onnx_build``) into
``$PERSONA_CACHE_DIR/models/<sha256 of the weights>[:16]/`` and checked by checksum
on every later use; a missing, corrupt or stale file is rebuilt with a log message.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.dedup.onnx_build.cache import CachedFile, file_sha256

__all__ = ["VARIANTS", "builtin_model", "cache_directory"]

VARIANTS = ("cpu", "cuda", "fp32")


@functools.lru_cache(maxsize=4)
def _weights_key(path: Path, size: int, mtime: float) -> str:
    """The weights' sha256, hashed once per process and file version."""
    return file_sha256(path)[:16]


def cache_directory() -> Path:
    """Where the built models of the installed weights live (created if needed)."""
    from engine.dedup.onnx_build.cache import cache_root
    from engine.local.models import minilm_weights

    weights = minilm_weights()
    stat = weights.stat()
    directory = cache_root() / "models" / _weights_key(weights, stat.st_size, stat.st_mtime)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _builder(variant: str) -> tuple[str, Callable[[], tuple[bytes, dict[str, Any]]]]:
    """The recipe name and build function of one variant (imports the heavy parts lazily)."""
    from engine.dedup.onnx_build import recipe
    from engine.dedup.onnx_build.weights import BertConfig, load_weights
    from engine.local.models import minilm_dir, minilm_tokenizer, minilm_weights

    def inputs() -> tuple[Any, BertConfig]:
        return load_weights(minilm_weights()), BertConfig.from_file(minilm_dir() / "config.json")

    def fp32() -> tuple[bytes, dict[str, Any]]:
        return recipe.build_fp32(*inputs()).SerializeToString(), {"variant": "fp32"}

    def cpu() -> tuple[bytes, dict[str, Any]]:
        model, record = recipe.build_cpu(*inputs(), minilm_tokenizer())
        return model.SerializeToString(), record

    def cuda() -> tuple[bytes, dict[str, Any]]:
        return recipe.build_cuda_fp16(*inputs()).SerializeToString(), {"variant": "fp16"}

    table = {
        "fp32": (recipe.FP32_RECIPE, fp32),
        "cpu": (recipe.cpu_recipe(), cpu),
        "cuda": (recipe.CUDA_RECIPE, cuda),
    }
    return table[variant]


def builtin_model(variant: str = "cpu") -> Path:
    """The path of a built variant ("cpu", "cuda" or "fp32"), building it if needed."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    recipe_name, build = _builder(variant)
    return CachedFile(cache_directory(), variant).ensure(recipe_name, build)
