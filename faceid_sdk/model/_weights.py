"""The shipped FFEM-AM weights: float16 arrays keyed by Keras weight path, plus ``model.json``.

Weights are stored as an ``.npz`` of float16 arrays keyed by ``layer/weight`` (Keras's
``Variable.path``), so any framework can read them without Keras, and a renamed or missing
layer fails loudly instead of loading silently into the wrong place.

The ``model_id`` written to ``model.json`` is ``ffem-am-<dim>-<12 hex>``, the hex being the
start of the SHA-256 of the canonical serialization of the weights (sorted keys; for each: the
key in UTF-8, its shape, its float16 bytes). It is independent of zip metadata, so the same
weights always get the same id, and the server can refuse vectors made by another model.
"""

from __future__ import annotations

import hashlib
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceid_sdk.errors import ModelMismatchError

__all__ = [
    "DEFAULT_MODEL_DIR",
    "fingerprint",
    "load_default_keras",
    "load_model_info",
    "load_weights_npz",
    "save_weights_npz",
]

#: Package directory of the shipped model (``weights.npz`` and ``model.json``).
DEFAULT_MODEL_DIR = "models/ffem_am"


def _weights_dict(model: Any) -> dict[str, npt.NDArray[np.float16]]:
    out: dict[str, npt.NDArray[np.float16]] = {}
    for w in model.weights:
        if w.path in out:
            raise ValueError(f"weight path {w.path!r} appears twice; layer names must be unique")
        out[w.path] = np.asarray(w.numpy(), np.float16)
    return out


def fingerprint(arrays: dict[str, npt.NDArray[Any]]) -> str:
    """First 12 hex digits of the SHA-256 of the canonical serialization (module docstring)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key], dtype=np.float16)
        h.update(key.encode("utf-8"))
        h.update(repr(tuple(a.shape)).encode("ascii"))
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def save_weights_npz(
    model: Any, directory: str | Path, *, extra_info: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``weights.npz`` (float16) and ``model.json`` for *model* into *directory*."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = _weights_dict(model)
    dim = int(model.output_shape[-1])
    size = int(model.input_shape[1])
    info: dict[str, Any] = {
        "model_id": f"ffem-am-{dim}-{fingerprint(arrays)}",
        "architecture": model.name,
        "embedding_dim": dim,
        "input_size": size,
        "input_format": "NHWC float32 RGB",
        "pixel_normalization": "x / 127.5 - 1 (uint8 RGB to [-1, 1])",
        "alignment": {
            "crop_size": 112,
            "resize": "112x112 crop to 96x96, area interpolation",
            "detector": "face-detection-retail-0004 (Intel Open Model Zoo, Apache-2.0)",
            "landmarks": "landmarks-regression-retail-0009 (Intel Open Model Zoo, Apache-2.0): "
            "eye centres, nose tip, mouth corners",
            "template_112": None,
        },
        "output": "L2-normalized feature; compare with Euclidean distance",
        "weights_file": "weights.npz",
        "weights_dtype": "float16",
        "parameters": int(sum(a.size for a in arrays.values())),
    }
    from faceid_sdk.alignment import TEMPLATE_112

    info["alignment"]["template_112"] = TEMPLATE_112.tolist()
    if extra_info:
        info.update(extra_info)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    (directory / "weights.npz").write_bytes(buf.getvalue())
    (directory / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_weights_npz(model: Any, path: str | Path, expected_id: str | None = None) -> None:
    """Set *model*'s weights from a float16 ``.npz`` written by :func:`save_weights_npz`."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    if expected_id is not None:
        got = fingerprint(arrays)
        if not expected_id.endswith(got):
            raise ModelMismatchError(
                f"weights in {path} have fingerprint {got!r}, expected the model_id "
                f"{expected_id!r} of model.json; reinstall faceid-sdk or rewrite model.json"
            )
    paths = {w.path for w in model.weights}
    missing, unexpected = paths - arrays.keys(), arrays.keys() - paths
    if missing or unexpected:
        raise ModelMismatchError(
            f"weights in {path} do not fit model {model.name!r}: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}; build the model with the model.json settings"
        )
    for w in model.weights:
        a = arrays[w.path]
        if tuple(a.shape) != tuple(w.shape):
            raise ModelMismatchError(
                f"weight {w.path!r} must have shape {tuple(w.shape)} (got {a.shape} in {path})"
            )
        w.assign(a.astype(np.float32))


def _default_dir() -> Path:
    return Path(str(resources.files("faceid_sdk").joinpath(DEFAULT_MODEL_DIR)))


def load_model_info(directory: str | Path | None = None) -> dict[str, Any]:
    """The shipped ``model.json`` (or the one in *directory*) as a dict."""
    d = Path(directory) if directory is not None else _default_dir()
    info: dict[str, Any] = json.loads((d / "model.json").read_text())
    return info


def load_default_keras(directory: str | Path | None = None) -> Any:
    """Build FFEM-AM and load the shipped float16 weights into it (float32 compute).

    The input is ``(batch, 96, 96, 3)`` float32 RGB scaled with ``x / 127.5 - 1`` (see
    :mod:`faceid_sdk.alignment`); the output is an L2-normalized ``(batch, 128)`` feature.
    """
    from ._builders import build_ffem_am

    d = Path(directory) if directory is not None else _default_dir()
    info = load_model_info(d)
    model = build_ffem_am(
        int(info["embedding_dim"]),
        attention=info.get("architecture", "ffem_am") == "ffem_am",
        input_size=int(info["input_size"]),
    )
    load_weights_npz(model, d / info["weights_file"], expected_id=info["model_id"])
    return model
