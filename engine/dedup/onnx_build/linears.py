"""Linear layers as ONNX nodes: fp32, or int8 weights with static, two-pass or per-row activations.

Every int8 product is onnxruntime's MatMulIntegerToFloat with uint8 activations and
int8 weights: on x86 that is the only fast int8 GEMM (u8s8, AMX/VNNI), and it scales
by per-column weight factors and adds the bias in its epilogue. Its activation scale
must be one number, so per-row (per-token) scales are applied by a Mul afterwards.
"""

from __future__ import annotations

import functools

import numpy as np
from onnx import TensorProto, helper

from engine.dedup.onnx_build.weights import Int8Linear
from engine.dedup.onnx_build.writer import GraphWriter

__all__ = ["OPSET_BLOCKED", "blocked_quantize_supported", "linear", "quantize_static", "static_product"]

MS = "com.microsoft"
#: QuantizeLinear takes one scale per block of a row (so: per row) from opset 21.
OPSET_BLOCKED = 21
#: Rows whose largest |x| is below this are all but zero; the floor keeps 1/scale finite.
TINY = 1e-6


def _scalar(g: GraphWriter, name: str, value: float, dtype: type = np.float32) -> str:
    return g.const(name, np.array(value, dtype=dtype))


def linear(g: GraphWriter, x: str, name: str, weight: np.ndarray, bias: np.ndarray, int8: Int8Linear | None) -> str:
    """x @ W + b in fp32 (MatMul then Add, as the exporter writes it) or as ``int8`` says."""
    if int8 is None:
        w_t = g.const(f"{name}.weight", np.ascontiguousarray(weight, dtype=np.float32))
        mm = g.op("MatMul", [x, w_t], name=f"{name}_matmul")
        return g.op("Add", [mm, g.const(f"{name}.bias", bias)], name=name)
    if int8.per_row:
        return _per_row(g, x, name, bias, int8)
    if int8.act_scale is None:
        q = g.const(f"{name}.weight_q", int8.q.astype(np.int8))
        w_scale = g.const(f"{name}.weight_scale", int8.scale.astype(np.float32))
        b = g.const(f"{name}.bias", bias.astype(np.float32))
        return g.op("DynamicQuantizeMatMul", [x, q, w_scale, "", b], name=name, domain=MS)
    xq, a_scale, a_zero = quantize_static(g, x, name, int8)
    if not int8.two_pass:
        return static_product(g, xq, a_scale, a_zero, name, int8, bias)
    first = static_product(g, xq, a_scale, a_zero, name, int8, bias, out=f"{name}_pass1")
    # The rounding residual lies in [-scale/2, scale/2] (more where the range clipped):
    # a second uint8 pass at scale/254 around 128 carries it.
    residual = g.op("Sub", [x, g.op("DequantizeLinear", [xq, a_scale, a_zero])])
    r_scale = _scalar(g, f"{name}.res_scale", int8.act_scale / 254.0)
    r_zero = _scalar(g, f"{name}.res_zero", 128, np.uint8)
    rq = g.op("QuantizeLinear", [residual, r_scale, r_zero])
    second = static_product(g, rq, r_scale, r_zero, name, int8, None, out=f"{name}_pass2")
    return g.op("Add", [first, second], name=name)


def quantize_static(g: GraphWriter, x: str, name: str, int8: Int8Linear) -> tuple[str, str, str]:
    """uint8 x with the calibrated scale and zero point: (xq, scale, zero point) tensor names."""
    assert int8.act_scale is not None, "static activations need a calibrated scale"
    a_scale = _scalar(g, f"{name}.act_scale", int8.act_scale)
    a_zero = _scalar(g, f"{name}.act_zero", int8.act_zero, np.uint8)
    return g.op("QuantizeLinear", [x, a_scale, a_zero], name=f"{name}_quant"), a_scale, a_zero


def static_product(
    g: GraphWriter,
    xq: str,
    a_scale: str,
    a_zero: str,
    name: str,
    int8: Int8Linear,
    bias: np.ndarray | None,
    out: str | None = None,
) -> str:
    """(xq - zero) * a_scale @ (q [+ residual / 254]) * w_scale [+ bias]: one or two int8 products.

    The weights are stored once per ``name`` however many products use them; the
    result is called ``out`` (default ``name``).
    """
    out = out or name
    ins = [xq, _weight(g, f"{name}.weight_q", int8.q), a_scale, _weight(g, f"{name}.weight_scale", int8.scale), a_zero]
    b = None if bias is None else _weight(g, f"{name}.bias", bias)
    ins += [] if b is None else ["", b]  # the bias is added in the product's epilogue
    if int8.residual is None:
        return g.op("MatMulIntegerToFloat", ins, name=out, domain=MS)
    rest = [
        xq,
        _weight(g, f"{name}.weight_r", int8.residual),
        a_scale,
        _weight(g, f"{name}.weight_r_scale", int8.scale / 254.0),
        a_zero,
    ]
    main = g.op("MatMulIntegerToFloat", ins, domain=MS)
    return g.op("Add", [main, g.op("MatMulIntegerToFloat", rest, domain=MS)], name=out)


def _weight(g: GraphWriter, name: str, value: np.ndarray) -> str:
    """An initializer stored once: int8 stays int8, everything else becomes float32."""
    dtype = np.int8 if value.dtype == np.int8 else np.float32
    return g.once(name, lambda: g.const(name, value.astype(dtype)))


def _per_row(g: GraphWriter, x: str, name: str, bias: np.ndarray, int8: Int8Linear) -> str:
    """Symmetric int8 per row: s = max|x| / 127 of that row, xq = round(x / s) + 128.

    A row's scale comes from that row alone, so the result never depends on the other
    texts in the batch; a token with outliers (the [CLS] row carries 3-5x the range of
    the others) no longer coarsens every other token's grid, as one static scale does.
    """
    k = int8.q.shape[0]
    low, high = g.reduce("ReduceMin", x, [-1]), g.reduce("ReduceMax", x, [-1])
    largest = g.op("Max", [high, g.op("Neg", [low]), _scalar(g, f"{name}.tiny", TINY)])
    s = g.op("Mul", [largest, _scalar(g, f"{name}.inv127", 1.0 / 127.0)], name=f"{name}_row_scale")
    zero = _scalar(g, f"{name}.zero", 128, np.uint8)
    if g.opset >= OPSET_BLOCKED:  # one block per row: QuantizeLinear divides by the row's scale itself
        # One [batch, seq, 1] tensor of 128s serves every per-row linear (all rows have one shape).
        zeros = g.once("row_zeros", lambda: _row_zeros(g, s))
        xq = g.op("QuantizeLinear", [x, s, zeros], name=f"{name}_quant", axis=-1, block_size=k)
    else:
        one = _scalar(g, f"{name}.one", 1.0)
        xq = g.op("QuantizeLinear", [g.op("Div", [x, s]), one, zero], name=f"{name}_quant")
    unit = _scalar(g, f"{name}.unit_scale", 1.0)
    y = static_product(g, xq, unit, zero, name, int8, None, out=f"{name}_rows")
    return g.op("Add", [g.op("Mul", [y, s]), g.const(f"{name}.bias", bias.astype(np.float32))], name=name)


def _row_zeros(g: GraphWriter, like: str) -> str:
    return g.op("Expand", [_scalar(g, "row_zero_128", 128, np.uint8), g.op("Shape", [like])], name="row_zeros")


@functools.lru_cache(maxsize=1)
def blocked_quantize_supported() -> bool:
    """Whether this onnxruntime runs QuantizeLinear-21 with ``block_size`` on the CPU (1.19+)."""
    import onnxruntime as ort

    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=-1, block_size=4)]
    graph = helper.make_graph(
        nodes,
        "probe",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 1]),
            helper.make_tensor_value_info("z", TensorProto.UINT8, [2, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [2, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET_BLOCKED)])
    model.ir_version = 10
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = {
            "x": np.array([[1, -1, 2, 0], [4, 4, -4, 0]], np.float32),
            "s": np.array([[1], [2]], np.float32),
            "z": np.array([[128], [128]], np.uint8),
        }
        got = session.run(None, feeds)[0]
    except Exception:  # noqa: BLE001  (any failure: fall back to Div + per-tensor QuantizeLinear)
        return False
    return bool((got == np.array([[129, 127, 130, 128], [130, 130, 126, 128]])).all())
