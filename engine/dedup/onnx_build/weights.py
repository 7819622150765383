"""The BERT encoder's configuration and weights, read from a Hugging Face model directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["BertConfig", "Int8Linear", "layer_linears", "load_weights"]


@dataclass(frozen=True)
class BertConfig:
    """The few config.json fields the graph needs."""

    hidden: int
    heads: int
    layers: int
    intermediate: int
    eps: float
    max_positions: int

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        """Read a Hugging Face BERT config.json; only absolute positions and GELU are supported."""
        raw = json.loads(Path(path).read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act {raw['hidden_act']!r} is not supported")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        return cls(
            hidden=raw["hidden_size"],
            heads=raw["num_attention_heads"],
            layers=raw["num_hidden_layers"],
            intermediate=raw["intermediate_size"],
            eps=raw.get("layer_norm_eps", 1e-12),
            max_positions=raw.get("max_position_embeddings", 512),
        )


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """Weights from model.safetensors as float32 numpy arrays, names without a ``bert.`` prefix."""
    from safetensors.numpy import load_file

    return {k.removeprefix("bert."): v.astype(np.float32) for k, v in load_file(str(path)).items()}


@dataclass(frozen=True)
class Int8Linear:
    """An int8 linear layer: weights q [K, N] with per-column scales; int8 activations.

    Activations are quantised in one of three ways. ``act_scale`` None and not
    ``per_row``: per tensor at run time (dynamic; an embedding then depends on its
    batch-mates, so only the bench's candidates use it). ``act_scale`` set: with this
    calibrated scale and uint8 ``act_zero`` (static); ``two_pass`` also quantises the
    rounding residual and runs a second int8 product on it (about 15-bit activations
    at twice the int8 cost). ``per_row``: each token row with its own symmetric scale
    max|x| / 127, found at run time (dynamic, but a row never sees its batch-mates).

    ``residual`` (int8 [K, N], optional) carries the weights' rounding residual at
    ``scale / 254``: W ~= scale * (q + residual / 254), about 15-bit weights for one
    more int8 product.
    """

    q: np.ndarray
    scale: np.ndarray
    act_scale: float | None = None
    act_zero: int = 0
    two_pass: bool = False
    per_row: bool = False
    residual: np.ndarray | None = None

    def columns(self, start: int, stop: int) -> Int8Linear:
        """The same linear restricted to output columns [start, stop) (e.g. Q of a packed QKV)."""
        residual = None if self.residual is None else self.residual[:, start:stop]
        return replace(self, q=self.q[:, start:stop], scale=self.scale[start:stop], residual=residual)


def layer_linears(w: dict[str, np.ndarray], i: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Layer ``i``'s linears as MatMul weights [K, N] and biases, Q/K/V packed as ``qkv``."""
    p = f"encoder.layer.{i}"
    qkv = [f"{p}.attention.self.{n}" for n in ("query", "key", "value")]
    return {
        f"l{i}.qkv": (
            np.concatenate([w[f"{n}.weight"].T for n in qkv], axis=1),
            np.concatenate([w[f"{n}.bias"] for n in qkv]),
        ),
        f"l{i}.o": (
            w[f"{p}.attention.output.dense.weight"].T,
            w[f"{p}.attention.output.dense.bias"],
        ),
        f"l{i}.ffn1": (w[f"{p}.intermediate.dense.weight"].T, w[f"{p}.intermediate.dense.bias"]),
        f"l{i}.ffn2": (w[f"{p}.output.dense.weight"].T, w[f"{p}.output.dense.bias"]),
    }
