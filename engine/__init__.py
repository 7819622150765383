"""persona-engine: persona-driven synthetic data at scale (the Persona Hub method).

The public façade; everything else is internal. Heavy parts (onnxruntime, usearch) load on
first use, so `import engine` stays cheap.

    from engine import load_config, run
    cfg, _ = load_config("config.toml")
    result = run(cfg, "out", ["texts.jsonl"])
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from engine.errors import (
    CheckpointError,
    ConfigError,
    EndpointError,
    FatalEndpointError,
    FingerprintMismatch,
    InputError,
    ModelUnavailable,
    PersonaError,
    RateLimited,
    ReplyError,
    RetryableError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "Config", "ConfigError", "DedupGate", "Embedder", "EndpointError", "FakeOpenAI",
    "FatalEndpointError", "FingerprintMismatch", "InputError", "MinHashIndex", "ModelUnavailable", "PersonaError",
    "RateLimited", "ReplyError", "RetryableError", "RunResult", "SemanticIndex", "dedup_files", "load_config",
    "read_records", "run", "__version__",
]

# name -> (module, attribute), imported on first access
_LAZY = {
    "Config": ("engine.config", "Config"),
    "load_config": ("engine.config", "load"),
    "run": ("engine.runner", "execute"),
    "RunResult": ("engine.runner", "RunResult"),
    "dedup_files": ("engine.offline", "dedup_files"),
    "read_records": ("engine.io.sinks", "read_records"),
    "DedupGate": ("engine.dedup.gate", "DedupGate"),
    "Embedder": ("engine.dedup.embedder", "Embedder"),
    "SemanticIndex": ("engine.dedup.semantic", "SemanticIndex"),
    "MinHashIndex": ("engine.dedup.minhash", "MinHashIndex"),
    "FakeOpenAI": ("engine.testing.fake_openai", "FakeOpenAI"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
