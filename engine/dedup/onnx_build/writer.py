"""A small builder for ONNX graphs: unique node names, initializers, opset-aware reductions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["GraphWriter"]


class GraphWriter:
    """Accumulates nodes and initializers with unique names, for one default-domain ``opset``."""

    def __init__(self, opset: int = 17) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.opset = opset
        self._n = 0
        self._shared: dict[str, str] = {}

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs: Any) -> str:
        """Add a one-output node; returns its output name (``name`` or a fresh one)."""
        return self.ops(op_type, inputs, 1, name, **attrs)[0]

    def ops(self, op_type: str, inputs: list[str], n_out: int, name: str | None = None, **attrs: Any) -> list[str]:
        """Add a node with ``n_out`` outputs (``domain=`` selects a contrib op set)."""
        self._n += 1
        base = name or f"{op_type.lower()}_{self._n}"
        outs = [base] if n_out == 1 else [f"{base}_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"{base}_node", **attrs))
        return outs

    def once(self, key: str, make: Callable[[], str]) -> str:
        """The tensor ``make()`` returns, created on the first call with ``key`` and shared after."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def reduce(self, op_type: str, x: str, axes: Sequence[int], name: str | None = None, keepdims: int = 1) -> str:
        """A Reduce* node over ``axes``: an attribute up to opset 17, an input from opset 18."""
        if self.opset < 18:
            return self.op(op_type, [x], name=name, axes=list(axes), keepdims=keepdims)
        key = "axes_" + "_".join(str(a).replace("-", "m") for a in axes)
        tensor = self.once(key, lambda: self.const(key, np.array(list(axes), dtype=np.int64)))
        return self.op(op_type, [x, tensor], name=name, keepdims=keepdims)
