"""The shipped OpenVINO landmark model as a TensorFlow function, for the TF.js export.

The browser must find the same five points as the server, so it runs the same landmark model
(``landmarks-regression-retail-0009``). TF.js cannot read OpenVINO IR, so this module reads the
IR (XML graph + binary weights) and rebuilds it, op by op, as a ``tf.function`` in NHWC, which
the TF.js converter then takes like any SavedModel. It supports the op types that model uses
(Parameter, Const, Convert, Convolution, GroupConvolution, MaxPool, Add, Multiply, PReLU,
Sigmoid, Result) and refuses any other with a clear error; ``check_against_openvino`` compares
the rebuilt function with OpenVINO's own output.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SUPPORTED_OPS", "check_against_openvino", "export_ir_tfjs", "ir_function"]

SUPPORTED_OPS = frozenset({
    "Parameter", "Const", "Convert", "Convolution", "GroupConvolution", "MaxPool", "Add",
    "Multiply", "PReLU", "Sigmoid", "Result",
})
_DTYPES = {"f16": np.float16, "f32": np.float32, "i64": np.int64, "i32": np.int32}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.replace(" ", "").split(",") if v != ""]


def _graph(xml: Path) -> tuple[dict[str, Any], dict[tuple[str, str], tuple[str, str]]]:
    root = ET.parse(xml).getroot()
    layers = {}
    for layer in root.find("layers"):  # type: ignore[union-attr]
        kind = layer.get("type")
        if kind not in SUPPORTED_OPS:
            raise ValueError(f"{xml.name}: op {kind!r} ({layer.get('name')}) is not supported; "
                             f"supported: {sorted(SUPPORTED_OPS)}")
        data = layer.find("data")
        layers[layer.get("id")] = {"type": kind, "data": dict(data.attrib) if data is not None
                                   else {}, "ports": [p.get("id") for p in layer.iter("port")]}
    edges = {}
    for e in root.find("edges"):  # type: ignore[union-attr]
        edges[(e.get("to-layer"), e.get("to-port"))] = (e.get("from-layer"), e.get("from-port"))
    return layers, edges


def _inputs(lid: str, layers: dict[str, Any], edges: dict[Any, Any]) -> list[str]:
    """The layers feeding *lid*, in input-port order."""
    ports = sorted((int(tp), edges[(lid, tp)][0]) for (tl, tp) in edges if tl == lid)
    return [src for _, src in ports]


def _nhwc_const(a: np.ndarray) -> np.ndarray:
    """A per-channel constant of shape (1, C, 1, 1) becomes (C,): it broadcasts over NHWC's
    last axis, and TF.js fuses a convolution with an Add only when the bias has rank 1."""
    if a.ndim == 4 and a.shape[0] == 1 and a.shape[2:] == (1, 1):
        return a.reshape(-1)
    if a.ndim == 4:
        return np.transpose(a, (0, 2, 3, 1))
    return a


def ir_function(xml: str | Path) -> tuple[Any, tuple[int, int, int]]:
    """``(fn, (height, width, channels))``: *fn* maps an NHWC float32 batch (BGR, 0..255, the
    IR's own input convention) to the IR's output, flattened per image."""
    import tensorflow as tf

    xml = Path(xml)
    blob = xml.with_suffix(".bin").read_bytes()
    layers, edges = _graph(xml)
    consts: dict[str, np.ndarray] = {}
    for lid, layer in layers.items():
        if layer["type"] == "Const":
            d = layer["data"]
            dtype = _DTYPES[d["element_type"]]
            off, size = int(d["offset"]), int(d["size"])
            consts[lid] = np.frombuffer(blob[off : off + size], dtype).reshape(_ints(d["shape"]))
    param = next(lid for lid, layer in layers.items() if layer["type"] == "Parameter")
    _, c, h, w = _ints(layers[param]["data"]["shape"])
    result = next(lid for lid, layer in layers.items() if layer["type"] == "Result")
    order = _topological(layers, edges)

    def fn(x: Any) -> Any:
        values: dict[str, Any] = {param: x}
        for lid in order:
            layer, kind = layers[lid], layers[lid]["type"]
            if kind in ("Parameter", "Const"):
                continue
            srcs = _inputs(lid, layers, edges)
            if kind == "Convert":
                if srcs[0] in consts:
                    consts[lid] = consts[srcs[0]].astype(np.float32)
                else:
                    values[lid] = values[srcs[0]]
                continue
            args = [values.get(s) for s in srcs]
            d = layer["data"]
            if kind in ("Convolution", "GroupConvolution"):
                weight = consts[srcs[1]]
                pads = list(zip(_ints(d["pads_begin"]), _ints(d["pads_end"]), strict=True))
                xin = tf.pad(args[0], [[0, 0], list(pads[0]), list(pads[1]), [0, 0]])
                strides = _ints(d["strides"])
                dil = _ints(d["dilations"])
                if kind == "Convolution":
                    k = tf.constant(np.transpose(weight, (2, 3, 1, 0)))  # O,I,kh,kw -> kh,kw,I,O
                    values[lid] = tf.nn.conv2d(xin, k, [1, *strides, 1], "VALID", dilations=dil)
                else:
                    g, o, i, kh, kw = weight.shape
                    if i != 1 or o != 1:
                        raise ValueError("only depthwise GroupConvolution is supported")
                    k = tf.constant(np.transpose(weight.reshape(g, kh, kw), (1, 2, 0))[..., None])
                    values[lid] = tf.nn.depthwise_conv2d(
                        xin, k, [1, *strides, 1], "VALID", dilations=dil)
            elif kind == "MaxPool":
                kernel, strides = _ints(d["kernel"]), _ints(d["strides"])
                pb, pe = _ints(d["pads_begin"]), _ints(d["pads_end"])
                xin = args[0]
                if d.get("rounding_type", "floor") == "ceil":
                    for axis in (0, 1):
                        size = int(xin.shape[1 + axis]) + pb[axis] + pe[axis]
                        extra = (-(size - kernel[axis]) % strides[axis])
                        pe[axis] += extra
                if any(pb) or any(pe):
                    xin = tf.pad(xin, [[0, 0], [pb[0], pe[0]], [pb[1], pe[1]], [0, 0]],
                                 constant_values=-np.inf)
                values[lid] = tf.nn.max_pool2d(xin, kernel, strides, "VALID")
            elif kind in ("Add", "Multiply"):
                a = args[0] if args[0] is not None else tf.constant(_nhwc_const(consts[srcs[0]]))
                b = args[1] if args[1] is not None else tf.constant(_nhwc_const(consts[srcs[1]]))
                values[lid] = a + b if kind == "Add" else a * b
            elif kind == "PReLU":
                slope = consts[srcs[1]].reshape(-1).astype(np.float32)
                xin = args[0]
                values[lid] = tf.maximum(xin, 0.0) + tf.constant(slope) * tf.minimum(xin, 0.0)
            elif kind == "Sigmoid":
                values[lid] = tf.sigmoid(args[0])
            elif kind == "Result":
                out = values[srcs[0]]
                values[lid] = tf.reshape(tf.transpose(out, (0, 3, 1, 2)), (tf.shape(out)[0], -1))
        return values[result]

    return fn, (h, w, c)


def _topological(layers: dict[str, Any], edges: dict[Any, Any]) -> list[str]:
    deps = {lid: set(_inputs(lid, layers, edges)) for lid in layers}
    order, done = [], set()
    while len(order) < len(layers):
        ready = [lid for lid in layers if lid not in done and deps[lid] <= done]
        if not ready:
            raise ValueError("the IR graph has a cycle")
        for lid in sorted(ready, key=int):
            order.append(lid)
            done.add(lid)
    return order


def check_against_openvino(xml: str | Path, n: int = 8, seed: int = 0) -> float:
    """Largest absolute difference between the rebuilt function and OpenVINO on random faces."""
    import openvino
    import tensorflow as tf

    fn, (h, w, c) = ir_function(xml)
    compiled = openvino.Core().compile_model(str(xml), "CPU",
                                             {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, h, w, c)).astype(np.float32)
    ours = np.asarray(fn(tf.constant(x)))
    theirs = np.concatenate([np.asarray(compiled(x[i : i + 1].transpose(0, 3, 1, 2))[0])
                             .reshape(1, -1) for i in range(n)])
    return float(np.abs(ours - theirs).max())


def export_ir_tfjs(xml: str | Path, target: str | Path) -> dict[str, Any]:
    """Write the TF.js graph model of the IR *xml* into the folder *target* (float32 weights:
    the model is 0.4 MB). Returns the metadata recorded in it."""
    import tempfile

    import tensorflow as tf

    from . import convert_saved_model

    xml = Path(xml)
    fn, (h, w, c) = ir_function(xml)
    module = tf.Module()
    module.f = tf.function(fn, input_signature=[tf.TensorSpec((None, h, w, c), tf.float32)])
    info = {"source": xml.name, "sha256": _sha256(xml.with_suffix(".bin")),
            "input": f"NHWC {h}x{w}x{c} BGR 0..255", "max_abs_diff_vs_openvino":
            check_against_openvino(xml)}
    with tempfile.TemporaryDirectory(prefix="faceid-ir-") as tmp:
        saved = Path(tmp) / "saved_model"
        tf.saved_model.save(module, str(saved), signatures={"serving_default": module.f})
        convert_saved_model(saved, Path(target), None, {"faceid": info})
    return info


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
