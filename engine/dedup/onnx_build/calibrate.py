"""Activation statistics of each linear's input on calibration texts (smoothing, GPTQ, int8)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from tokenizers import Tokenizer

__all__ = ["InputStats", "calibrate", "linear_names"]


def linear_names(layers: int) -> list[str]:
    """The plain graph's linear layers in order: ``l{i}.qkv``, ``.o``, ``.ffn1``, ``.ffn2``."""
    return [f"l{i}.{part}" for i in range(layers) for part in ("qkv", "o", "ffn1", "ffn2")]


@dataclass
class InputStats:
    """One linear's input over calibration tokens: per-channel range and the Gram matrix."""

    low: np.ndarray  # per-channel minimum [K]
    high: np.ndarray  # per-channel maximum [K]
    gram: np.ndarray  # X^T X [K, K], float64 (GPTQ's Hessian up to a factor)
    tokens: int

    def scaled(self, factors: np.ndarray) -> InputStats:
        """The statistics of X * factors (positive per-channel factors)."""
        f = factors.astype(np.float64)
        return InputStats(self.low * factors, self.high * factors, self.gram * np.outer(f, f), self.tokens)


def _batches(tokenizer: Path, texts: Sequence[str], size: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(input_ids, attention_mask) batches of length-sorted, unpadded-per-batch texts."""
    tok = Tokenizer.from_file(str(tokenizer))
    tok.no_padding()
    tok.no_truncation()
    tok.enable_truncation(256)
    ids = [e.ids for e in tok.encode_batch(list(texts))]
    order = np.argsort([len(i) for i in ids], kind="stable")
    for start in range(0, len(order), size):
        rows = [ids[i] for i in order[start : start + size]]
        input_ids = np.zeros((len(rows), max(map(len, rows))), np.int64)
        mask = np.zeros_like(input_ids)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        yield input_ids, mask


def calibrate(model: onnx.ModelProto, tokenizer: Path, texts: Sequence[str], layers: int) -> dict[str, InputStats]:
    """Input statistics of each linear of a plain fp32 graph over ``texts`` (padding excluded)."""
    by_node = {n.name: n.input[0] for n in model.graph.node}
    wanted = {name: by_node[f"{name}_matmul_node"] for name in linear_names(layers)}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    tensors = sorted(set(wanted.values()))
    for tensor in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    stats: dict[str, InputStats] = {}
    for input_ids, mask in _batches(tokenizer, texts):
        feeds = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros_like(input_ids),
        }
        outs = dict(zip(tensors, session.run(tensors, feeds), strict=True))
        valid = mask.astype(bool)
        for name, tensor in wanted.items():
            x = outs[tensor][valid]
            # float32 products summed in float64: fast enough, precise enough for GPTQ.
            low, high, gram = x.min(axis=0), x.max(axis=0), (x.T @ x).astype(np.float64)
            if name in stats:
                s = stats[name]
                s.low, s.high = np.minimum(s.low, low), np.maximum(s.high, high)
                s.gram += gram
                s.tokens += len(x)
            else:
                stats[name] = InputStats(low, high, gram, len(x))
    return stats
