"""Export FFEM-AM for each backend: Keras, ONNX (server without TensorFlow), TF.js (browser).

Every export is made from the same Keras weights and checked against them by
``faceid-sdk parity``. Quantization stores weights in fewer bits and computes in float32
everywhere, so it changes bytes on the wire, not the arithmetic.

    ================  =============================  ===================================
    format            file(s) written under ``out``  quantize
    ================  =============================  ===================================
    ``keras``         ``ffem_am.keras``              ``float16``: ``ffem_am.float16/``
                                                     (``weights.npz`` + ``model.json``,
                                                     the shipped layout)
    ``onnx``          ``ffem_am[.Q].onnx``           ``float16``, ``uint8``
    ``tfjs``          ``ffem_am[.Q].tfjs/``          ``float16``, ``uint8``, ``mixed``
                      (``model.json`` + shards)
    ================  =============================  ===================================
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ._keras_model import LoadedModel, load_keras

__all__ = ["FORMATS", "QUANTIZATIONS", "ExportResult", "export_model", "export_path"]

FORMATS = ("keras", "onnx", "tfjs")
QUANTIZATIONS = ("float16", "uint8", "mixed")
#: ONNX opset: 17 is read by every onnxruntime >= 1.14 and has all ops this model uses.
ONNX_OPSET = 17
#: Weight tensors smaller than this stay float32 when quantizing (biases of a few
#: channels, the 3-tap ECA kernels): they weigh nothing and are the most sensitive.
_MIN_QUANTIZED_SIZE = 16


@attrs.frozen
class ExportResult:
    """What an export wrote: where, how big, and for which model."""

    format: str
    quantize: str | None
    path: Path
    size_bytes: int
    model_id: str

    def __repr__(self) -> str:
        q = f" {self.quantize}" if self.quantize else ""
        return f"<ExportResult {self.format}{q} {self.size_bytes / 1e6:.2f} MB at {self.path}>"


def export_path(out: str | Path, format: str, quantize: str | None = None) -> Path:
    """Where :func:`export_model` writes *format* / *quantize* under *out*."""
    _check(format, quantize)
    q = f".{quantize}" if quantize else ""
    if format == "keras":
        return Path(out) / ("ffem_am.float16" if quantize else "ffem_am.keras")
    return Path(out) / f"ffem_am{q}.{format}"


def export_model(
    format: str,
    out: str | Path,
    quantize: str | None = None,
    weights: str | Path | None = None,
    *,
    model: LoadedModel | None = None,
) -> ExportResult:
    """Export FFEM-AM as *format* (``keras``, ``onnx`` or ``tfjs``) into the folder *out*.

    Args:
      format: target runtime.
      out: folder to write into (created); the file name follows :func:`export_path`.
      quantize: ``None`` (float32), ``"float16"`` or ``"uint8"`` weights, or ``"mixed"``
        (TF.js only: uint8 with float16 where rounding hurts, ``tfjs.MIXED_FLOAT16``).
      weights: the Keras weights to export (see ``load_keras``); ``None``: the shipped ones.
      model: an already loaded model, to export several formats without reloading.
    """
    _check(format, quantize)
    loaded = model if model is not None else load_keras(weights)
    target = export_path(out, format, quantize)
    target.parent.mkdir(parents=True, exist_ok=True)
    if format == "keras":
        _export_keras(loaded, target, quantize)
    elif format == "onnx":
        _export_onnx(loaded, target, quantize)
    else:
        from .tfjs import export_tfjs

        export_tfjs(loaded, target, quantize)
    return ExportResult(format, quantize, target, _size(target), loaded.model_id)


def _check(format: str, quantize: str | None) -> None:
    if format not in FORMATS:
        raise ValueError(f"'format' must be one of {FORMATS} (got {format!r})")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"'quantize' must be None or one of {QUANTIZATIONS} (got {quantize!r})")
    if quantize == "mixed" and format != "tfjs":
        raise ValueError(
            f"'quantize' 'mixed' (uint8 with float16 where rounding hurts) is for format 'tfjs' "
            f"(got {format!r}): use float16 or uint8"
        )
    if format == "keras" and quantize == "uint8":
        raise ValueError(
            "'quantize' must be None or 'float16' for format 'keras' (got 'uint8'): Keras "
            "weights are kept at full or half precision; use --format onnx or tfjs for uint8"
        )


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _export_keras(loaded: LoadedModel, target: Path, quantize: str | None) -> None:
    if quantize == "float16":
        from faceid_sdk.model import save_weights_npz

        info = save_weights_npz(loaded.model, target)
        if info["model_id"] != loaded.model_id:
            # Expected when the source was float32: rounding to float16 is a new model.
            (target / "source_model_id.txt").write_text(loaded.model_id + "\n")
        return
    loaded.model.save(target)


def metadata(loaded: LoadedModel, quantize: str | None) -> dict[str, str]:
    """What every export records about itself, so a runtime can check what it loaded."""
    return {
        "model_id": loaded.model_id,
        "dim": str(loaded.dim),
        "input_size": str(loaded.input_size),
        "input": "NHWC float32 RGB, x / 127.5 - 1",
        "output": "L2-normalized feature; compare with Euclidean distance",
        "weights": quantize or "float32",
    }


def onnx_model_proto(loaded: LoadedModel) -> Any:
    """The float32 ONNX graph of *loaded*, with input ``image`` and output ``embedding``."""
    import tensorflow as tf
    import tf2onnx

    size = loaded.input_size
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(loaded.model, input_signature=spec, opset=ONNX_OPSET)
    return proto


def _export_onnx(loaded: LoadedModel, target: Path, quantize: str | None) -> None:
    import onnx

    proto = onnx_model_proto(loaded)
    if quantize == "float16":
        _quantize_float16(proto)
    elif quantize == "uint8":
        _quantize_uint8(proto)
    for key, value in metadata(loaded, quantize).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(proto.SerializeToString())
    Path(tmp.name).chmod(0o644)  # NamedTemporaryFile creates 0600; the file is meant to be shipped
    Path(tmp.name).replace(target)


def _float_initializers(proto: Any) -> list[tuple[Any, np.ndarray]]:
    from onnx import TensorProto, numpy_helper

    return [
        (init, numpy_helper.to_array(init))
        for init in proto.graph.initializer
        if init.data_type == TensorProto.FLOAT
        and int(np.prod(init.dims, dtype=np.int64)) >= _MIN_QUANTIZED_SIZE
    ]


def _replace_initializers(proto: Any, decoders: list[Any], new: list[Any], old: list[Any]) -> None:
    graph = proto.graph
    for init in old:
        graph.initializer.remove(init)
    graph.initializer.extend(new)
    # Decoders go first: nodes must stay topologically sorted.
    nodes = decoders + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def _quantize_float16(proto: Any) -> None:
    """Store large weights as float16 with a Cast back to float32 (computation unchanged)."""
    from onnx import TensorProto, helper, numpy_helper

    decoders, new, old = [], [], []
    for init, array in _float_initializers(proto):
        stored = f"{init.name}__float16"
        new.append(numpy_helper.from_array(array.astype(np.float16), stored))
        decoders.append(helper.make_node("Cast", [stored], [init.name], to=TensorProto.FLOAT))
        old.append(init)
    _replace_initializers(proto, decoders, new, old)


def _quantize_uint8(proto: Any) -> None:
    """Store large weights as per-tensor affine uint8 (as TF.js does), dequantized at load."""
    from onnx import helper, numpy_helper

    decoders, new, old = [], [], []
    for init, array in _float_initializers(proto):
        q, scale, zero = affine_uint8(array)
        base = init.name
        new += [
            numpy_helper.from_array(q, f"{base}__uint8"),
            numpy_helper.from_array(np.array(scale, np.float32), f"{base}__scale"),
            numpy_helper.from_array(np.array(zero, np.uint8), f"{base}__zero"),
        ]
        decoders.append(
            helper.make_node(
                "DequantizeLinear", [f"{base}__uint8", f"{base}__scale", f"{base}__zero"], [base]
            )
        )
        old.append(init)
    _replace_initializers(proto, decoders, new, old)


def affine_uint8(array: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Per-tensor affine uint8: ``array ≈ (q - zero) * scale``, with 0.0 exactly representable."""
    lo, hi = min(float(array.min()), 0.0), max(float(array.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = int(np.clip(round(-lo / scale), 0, 255))
    q = np.clip(np.round(array / scale) + zero, 0, 255).astype(np.uint8)
    return q, scale, zero
