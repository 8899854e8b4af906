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

from ..openvino_graph import STRUCTURAL_OPS, ints, read_ir

__all__ = ["CONVERSION", "SUPPORTED_OPS", "check_against_openvino", "export_ir_tfjs",
           "ir_function"]

#: Version of the graph this module builds from an IR; a change re-exports vendor/ models.
#: 2: convolutions pad inside the op (no Pad copies).
CONVERSION = 2

SUPPORTED_OPS = STRUCTURAL_OPS | {
    "Convolution", "GroupConvolution", "MaxPool", "Add", "Multiply", "PReLU", "ReLU", "Sigmoid",
    "Concat",
}


def _nhwc_const(a: np.ndarray) -> np.ndarray:
    """A per-channel constant of shape (1, C, 1, 1) becomes (C,): it broadcasts over NHWC's
    last axis, and TF.js fuses a convolution with an Add only when the bias has rank 1."""
    if a.ndim == 4 and a.shape[0] == 1 and a.shape[2:] == (1, 1):
        return a.reshape(-1)
    if a.ndim == 4:
        return np.transpose(a, (0, 2, 3, 1))
    return a


def ir_function(
    xml: str | Path, outputs: tuple[str, ...] | None = None
) -> tuple[Any, tuple[int, int, int]]:
    """``(fn, (height, width, channels))``: *fn* maps an NHWC float32 batch (BGR, 0..255, the
    IR's own input convention) to the IR's output flattened per image, or, with *outputs*
    (layer names), to those layers' outputs in NHWC (the graph cut there)."""
    import tensorflow as tf

    graph = read_ir(xml, SUPPORTED_OPS, outputs)
    layers, order, ends, consts = graph.layers, graph.order, graph.ends, graph.consts
    param = graph.parameter
    _, c, h, w = graph.input_shape

    def fn(x: Any) -> Any:
        values: dict[str, Any] = {param: x}
        for lid in order:
            layer, kind = layers[lid], layers[lid]["type"]
            if kind in ("Parameter", "Const"):
                continue
            srcs = graph.inputs[lid]
            if kind == "Convert":
                if lid not in consts:
                    values[lid] = values[srcs[0]]
                continue
            args = [values.get(s) for s in srcs]
            d = layer["data"]
            if kind in ("Convolution", "GroupConvolution"):
                weight = consts[srcs[1]]
                pads = list(zip(ints(d["pads_begin"]), ints(d["pads_end"]), strict=True))
                strides = ints(d["strides"])
                dil = ints(d["dilations"])
                xin = args[0]
                if kind == "Convolution":
                    k = tf.constant(np.transpose(weight, (2, 3, 1, 0)))  # O,I,kh,kw -> kh,kw,I,O
                    # Padding inside the convolution (XNNPACK pads as it reads) rather than a
                    # Pad op that first copies the whole tensor.
                    padding: Any = "VALID"
                    if any(any(p) for p in pads):
                        padding = [[0, 0], list(pads[0]), list(pads[1]), [0, 0]]
                    values[lid] = tf.nn.conv2d(xin, k, [1, *strides, 1], padding, dilations=dil)
                else:
                    g, o, i, kh, kw = weight.shape
                    if i != 1 or o != 1:
                        raise ValueError("only depthwise GroupConvolution is supported")
                    k = tf.constant(np.transpose(weight.reshape(g, kh, kw), (1, 2, 0))[..., None])
                    if any(any(p) for p in pads):
                        xin = tf.pad(xin, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]])
                    values[lid] = tf.nn.depthwise_conv2d(
                        xin, k, [1, *strides, 1], "VALID", dilations=dil)
            elif kind == "MaxPool":
                kernel, strides = ints(d["kernel"]), ints(d["strides"])
                pb, pe = ints(d["pads_begin"]), ints(d["pads_end"])
                xin = args[0]
                ends_ = [tf.constant(pe[0]), tf.constant(pe[1])]
                if d.get("rounding_type", "floor") == "ceil":
                    # Extra end padding so that a partial last window counts (works for
                    # inputs whose size is only known at run time).
                    for axis in (0, 1):
                        size = tf.shape(xin)[1 + axis] + pb[axis] + pe[axis]
                        ends_[axis] = pe[axis] + tf.math.floormod(
                            -(size - kernel[axis]), strides[axis])
                pads = tf.stack([[0, 0], [pb[0], ends_[0]], [pb[1], ends_[1]], [0, 0]])
                xin = tf.pad(xin, pads, constant_values=-np.inf)
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
            elif kind == "ReLU":
                values[lid] = tf.nn.relu(args[0])
            elif kind == "Concat":
                if int(d["axis"]) != 1:
                    raise ValueError("only channel Concat (axis 1) is supported")
                values[lid] = tf.concat(args, axis=3)
            elif kind == "Result":
                out = values[srcs[0]]
                values[lid] = tf.reshape(tf.transpose(out, (0, 3, 1, 2)), (tf.shape(out)[0], -1))
        if outputs is None:
            return values[ends[0]]
        return tuple(values[e] for e in ends)

    return fn, (h, w, c)


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


def export_ir_tfjs(
    xml: str | Path, target: str | Path, outputs: tuple[str, ...] | None = None,
    quantize: str | None = None,
) -> dict[str, Any]:
    """Write the TF.js graph model of the IR *xml* (cut at *outputs*, whose input size is
    then free) into the folder *target*. Returns the metadata recorded in it."""
    import tempfile

    import tensorflow as tf

    from . import convert_saved_model

    xml = Path(xml)
    fn, (h, w, c) = ir_function(xml, outputs)
    module = tf.Module()
    shape = (None, h, w, c) if outputs is None else (1, None, None, c)
    module.f = tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32)])
    info: dict[str, Any] = {"source": xml.name, "sha256": _sha256(xml.with_suffix(".bin")),
                            "conversion": CONVERSION,
                            "input": f"NHWC {'x'.join(str(v) for v in shape[1:])} BGR 0..255"}
    if outputs is None:
        info["max_abs_diff_vs_openvino"] = check_against_openvino(xml)
    else:
        info["outputs"] = list(outputs)
        info["ssd"] = ssd_parameters(xml)
    with tempfile.TemporaryDirectory(prefix="faceid-ir-") as tmp:
        saved = Path(tmp) / "saved_model"
        tf.saved_model.save(module, str(saved), signatures={"serving_default": module.f})
        convert_saved_model(saved, Path(target), quantize, {"faceid": info})
    return info


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


#: The SSD head layers of face-detection-retail-0004 whose outputs the page decodes itself.
DETECTOR_HEADS = ("fc7_mbox_loc", "fc7_mbox_conf")


def ssd_parameters(xml: str | Path) -> dict[str, Any]:
    """The clustered-prior and decoding settings of an SSD IR (PriorBoxClustered and
    DetectionOutput attributes), for decoding the head outputs outside OpenVINO."""
    root = ET.parse(Path(xml)).getroot()
    found: dict[str, Any] = {}
    for layer in root.find("layers"):  # type: ignore[union-attr]
        data = layer.find("data")
        attrs = dict(data.attrib) if data is not None else {}
        if layer.get("type") == "PriorBoxClustered":
            found["widths"] = [float(v) for v in attrs["width"].split(",")]
            found["heights"] = [float(v) for v in attrs["height"].split(",")]
            found["step"] = float(attrs["step"])
            found["offset"] = float(attrs["offset"])
            found["variance"] = [float(v) for v in attrs["variance"].split(",")]
        elif layer.get("type") == "DetectionOutput":
            if "CENTER_SIZE" not in attrs["code_type"] or attrs["share_location"] != "true":
                raise ValueError("only CENTER_SIZE decoding with shared locations is supported")
            found["nms_threshold"] = float(attrs["nms_threshold"])
            found["top_k"] = int(attrs["top_k"])
            found["keep_top_k"] = int(attrs["keep_top_k"])
    return found


def decode_ssd(loc: np.ndarray, conf: np.ndarray, size: int, params: dict[str, Any],
               min_confidence: float) -> list[tuple[float, float, float, float, float]]:
    """Face boxes ``(x0, y0, x1, y1, score)`` (normalized) from one image's NHWC head outputs:
    the reference for the page's JavaScript decoder (pipeline.js), checked against OpenVINO."""
    fh, fw = loc.shape[:2]
    k = len(params["widths"])
    loc = loc.reshape(fh, fw, k, 4)
    logits = conf.reshape(fh, fw, k, 2)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    score = (e / e.sum(-1, keepdims=True))[..., 1]
    step, off = params["step"], params["offset"]
    cy, cx = np.meshgrid((np.arange(fh) + off) * step / size, (np.arange(fw) + off) * step / size,
                         indexing="ij")
    pw = np.array(params["widths"]) / size
    ph = np.array(params["heights"]) / size
    v = params["variance"]
    bx = cx[..., None] + loc[..., 0] * v[0] * pw
    by = cy[..., None] + loc[..., 1] * v[1] * ph
    bw = np.exp(loc[..., 2] * v[2]) * pw
    bh = np.exp(loc[..., 3] * v[3]) * ph
    boxes = np.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], -1).reshape(-1, 4)
    scores = score.reshape(-1)
    order = [i for i in np.argsort(-scores, kind="stable")[: params["top_k"]]
             if scores[i] >= min_confidence]
    kept: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= params["nms_threshold"] for j in kept):
            kept.append(i)
    return [(*map(float, boxes[i]), float(scores[i])) for i in kept[: params["keep_top_k"]]]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
