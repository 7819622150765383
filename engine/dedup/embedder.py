"""Sentence embeddings on onnxruntime: tokenize, run, mean-pool, L2-normalise.

onnxruntime is imported at the top of this module on purpose: usearch 2.26.x
segfaults when it is imported before onnxruntime, so every module that uses
usearch imports this one first.

On the CPU the cores run separate single-threaded model runs side by side instead
of sharing each run: the int8 graph is mostly small memory-bound ops (Transpose,
Softmax, LayerNorm, GELU) that gain little or nothing from a second intra-op thread,
so on 2 cores two runs at once gave 1.3-1.4x the texts/s of one 2-thread run
(bench/embed.py). Runs are also cut to at most ``CPU_RUN_TEXTS`` texts, whose
activations stay in cache (16 texts: +15% over 64).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from engine.local.models import ModelFiles, resolve_model

__all__ = ["CPU_RUN_TEXTS", "Embedder", "cuda_device_present"]

log = logging.getLogger(__name__)

#: The most texts in one CPU model run (larger batches are cut); measured best 8-20.
CPU_RUN_TEXTS = 16


def _cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cuda_device_present() -> bool:
    """Whether the CUDA driver loads and reports at least one device (no CUDA libraries needed)."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        driver = ctypes.CDLL("libcuda.so.1" if sys.platform != "win32" else "nvcuda.dll")
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return count.value > 0


def _session_options(threads: int) -> ort.SessionOptions:
    """Options for one embedding session: quiet, ``threads`` intra-op threads, full graph opts."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a CPU box must print nothing
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _cuda_session(path: Path, threads: int) -> ort.InferenceSession | None:
    """A session on the CUDA provider, or None when the provider does not initialise."""
    try:
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels, when they are installed
    except Exception:  # noqa: BLE001  (best effort: system libraries may do instead)
        pass
    # A provider that fails to load logs at ERROR on the default logger; we report it once.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(str(path), _session_options(threads), providers=["CUDAExecutionProvider"])
    except Exception as exc:  # noqa: BLE001  (any failure means: use the CPU)
        log.warning("CUDA provider unusable (%s); using the CPU", exc)
        return None
    finally:
        ort.set_default_logger_severity(2)
    if session.get_providers()[0] != "CUDAExecutionProvider":
        log.warning("CUDA provider did not initialise; using the CPU")
        return None
    return session


def _load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    """A tokenizer with the file's fixed padding removed and truncation at ``max_length``."""
    tok = Tokenizer.from_file(str(path))
    # The shipped tokenizer.json pads every text to 128 tokens; we pad per batch.
    tok.no_padding()
    tok.no_truncation()
    tok.enable_truncation(max_length)
    return tok


class Embedder:
    """Embeds texts with an ONNX sentence encoder; batches are cut from length-sorted texts.

    ``threads`` (default: the cores this process may use) is the CUDA session's
    intra-op thread count, or on the CPU the number of single-threaded runs at once.
    ``batch_size`` is the most texts per model run; on the CPU runs hold at most
    ``CPU_RUN_TEXTS``, and a small call is split so that every thread gets a run. Our
    built models give a text the same embedding whichever texts share its run.
    """

    dim: int
    provider: str

    def __init__(
        self,
        model: str | Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        providers: str = "auto",
        threads: int = 0,
        batch_size: int = 64,
        max_length: int = 256,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        if providers not in ("auto", "cpu", "cuda"):
            raise ValueError(f"providers must be 'auto', 'cpu' or 'cuda', got {providers!r}")
        self.threads = threads if threads > 0 else _cpu_count()
        self.batch_size = batch_size
        self.session, self.files, self.provider = self._open(model, tokenizer_path, providers)
        parallel = self.provider == "cpu" and self.threads > 1
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="embed") if parallel else None
        self.max_length = min(max_length, self.files.max_positions)
        self._tok = _load_tokenizer(self.files.tokenizer, self.max_length)
        inputs = {i.name: i.type for i in self.session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - inputs.keys()
        if missing:
            raise ValueError(f"{self.files.onnx} lacks the inputs {sorted(missing)}")
        self._int_dtype = np.int32 if inputs["input_ids"] == "tensor(int32)" else np.int64
        self._type_ids = "token_type_ids" in inputs
        outputs = [o.name for o in self.session.get_outputs()]
        self._output = "sentence_embedding" if "sentence_embedding" in outputs else outputs[0]
        self.dim = int(self._run(np.full((1, 2), 101), np.ones((1, 2))).shape[1])

    def __repr__(self) -> str:
        return (
            f"Embedder(model={self.files.name!r}, provider={self.provider!r}, dim={self.dim}, "
            f"threads={self.threads}, batch_size={self.batch_size})"
        )

    def _open(
        self, model: str | Path | None, tokenizer: Path | None, providers: str
    ) -> tuple[ort.InferenceSession, ModelFiles, str]:
        """The session, its files and provider: CUDA only when asked or a device is present."""
        if providers == "cuda" or (providers == "auto" and cuda_device_present()):
            files = resolve_model(model, tokenizer, provider="cuda")
            session = _cuda_session(files.onnx, self.threads)
            if session is not None:
                return session, files, "cuda"
            if providers == "cuda":
                raise RuntimeError("providers='cuda' was asked for but CUDA did not initialise")
        files = resolve_model(model, tokenizer, provider="cpu")
        options = _session_options(1)  # the threads run whole batches side by side instead
        session = ort.InferenceSession(str(files.onnx), options, providers=["CPUExecutionProvider"])
        return session, files, "cpu"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` as float32 [n, dim], L2-normalised, in input order."""
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        ids = [e.ids for e in encodings]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=n)
        # Batches of similar length waste little compute on padding; results go back by index.
        order = np.argsort(lengths, kind="stable")
        size = self._run_size(n)

        def run(start: int) -> None:
            rows = order[start : start + size]
            width = int(lengths[rows].max())
            input_ids = np.zeros((len(rows), width), dtype=self._int_dtype)
            mask = np.zeros((len(rows), width), dtype=self._int_dtype)
            for r, i in enumerate(rows):
                input_ids[r, : lengths[i]] = ids[i]
                mask[r, : lengths[i]] = 1
            out[rows] = self._run(input_ids, mask)

        starts = range(0, n, size)
        if self._pool is None or len(starts) == 1:
            for start in starts:
                run(start)
        else:  # onnxruntime releases the GIL while it runs
            list(self._pool.map(run, starts))
        return out

    def _run_size(self, n: int) -> int:
        """Texts per model run for a call of ``n`` texts."""
        if self.provider != "cpu":
            return self.batch_size
        size = min(self.batch_size, CPU_RUN_TEXTS)
        if self._pool is not None:
            size = min(size, -(-n // self.threads))  # every thread gets work
        return max(size, 1)

    def _run(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One batch through the model, then pooling (when the graph has none) and L2 norm."""
        feeds = {
            "input_ids": input_ids.astype(self._int_dtype, copy=False),
            "attention_mask": mask.astype(self._int_dtype, copy=False),
        }
        if self._type_ids:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        hidden = np.asarray(self.session.run([self._output], feeds)[0], dtype=np.float32)
        if hidden.ndim == 3:
            weights = mask.astype(np.float32)[:, :, None]
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        else:
            pooled = hidden
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: np.ndarray = pooled / np.maximum(norms, 1e-12)
        return result
