"""The ONNX Runtime backend: serves extraction with ``faceid-sdk[onnx]`` and no TensorFlow.

This module must never import TensorFlow (a test checks ``sys.modules``). The ONNX file is
made by ``faceid-sdk export --format onnx`` and carries its ``model_id`` in its metadata.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceid_sdk.errors import BackendUnavailableError, ModelMismatchError

from ._common import DEFAULT_BATCH_SIZE, PhotoMixin, as_faces, batches, check_batch_size, normalized

__all__ = ["DEFAULT_ONNX_FILE", "OnnxExtractor", "default_onnx_path", "session_options"]

#: The ONNX export shipped beside the Keras weights, relative to the ``faceid_sdk`` package.
DEFAULT_ONNX_FILE = "models/ffem_am/ffem_am.onnx"


def default_onnx_path() -> Path:
    """Where the shipped ONNX export lives (it may be missing in a source checkout)."""
    return Path(str(resources.files("faceid_sdk").joinpath(DEFAULT_ONNX_FILE)))


def session_options(threads: int | None = None) -> Any:
    """Session options for small machines shared with other work.

    ONNX Runtime's defaults spin idle worker threads on every core, which steals CPU from
    the web server and the FAISS search on a 2-core machine; a 2.2 M-parameter model gains
    little from more than a few threads anyway.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads if threads is not None else min(4, os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OnnxExtractor(PhotoMixin):
    """FFEM-AM in ONNX Runtime: aligned uint8 faces in, unit float32 vectors out.

    Args:
      model_path: an ``.onnx`` file from ``faceid-sdk export --format onnx``; ``None`` uses
        the one shipped in the package.
      model_id: expected id; when the file says otherwise, :class:`ModelMismatchError`.
        ``None`` takes the file's own (or the ``model.json`` beside it).
      threads: intra-op threads (default: up to 4).
      batch_size: faces per forward pass.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_id: str | None = None,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        import onnxruntime as ort

        self.batch_size = check_batch_size(batch_size)
        path = Path(model_path) if model_path is not None else default_onnx_path()
        if not path.is_file():
            raise BackendUnavailableError(
                f"the ONNX model {str(path)!r} does not exist: export one with "
                "`faceid-sdk export --format onnx --out DIR` and pass model_path=DIR/ffem_am.onnx"
                if model_path is not None
                else f"this installation ships no ONNX model ({path} not found): export one with "
                "`faceid-sdk export --format onnx` or use the 'tensorflow' backend"
            )
        self.path = path
        self._session = ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelMismatchError(
                f"the ONNX model must have one input and one output (got {len(inputs)} and "
                f"{len(outputs)} in {path}); export it with `faceid-sdk export --format onnx`",
                code="model_format",
            )
        self._input = inputs[0].name
        self.input_size = int(inputs[0].shape[1])
        self.dim: int = int(outputs[0].shape[1])
        found = _file_model_id(self._session, path)
        if model_id is not None and found is not None and found != model_id:
            raise ModelMismatchError(
                f"the ONNX model {path} must be {model_id!r} (got {found!r}): re-export it from "
                "the weights you mean to serve",
                code="model_id",
            )
        chosen = model_id or found
        if chosen is None:
            raise ModelMismatchError(
                f"the ONNX model {path} names no model_id (no metadata, no model.json beside it): "
                "pass model_id=... or re-export with `faceid-sdk export --format onnx`",
                code="model_id",
            )
        self.model_id: str = chosen

    def __repr__(self) -> str:
        return f"<OnnxExtractor {self.model_id} dim={self.dim} from {self.path.name}>"

    def embed_aligned(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Embed ``(n, 96, 96, 3)`` RGB uint8 faces aligned to the canonical template."""
        array = as_faces(faces, self.input_size)
        out = np.empty((len(array), self.dim), np.float32)
        for part in batches(len(array), self.batch_size):
            out[part] = self._session.run(None, {self._input: normalized(array[part])})[0]
        return out


def _file_model_id(session: Any, path: Path) -> str | None:
    meta = session.get_modelmeta().custom_metadata_map
    if "model_id" in meta:
        return str(meta["model_id"])
    beside = path.parent / "model.json"
    if beside.is_file():
        return str(json.loads(beside.read_text())["model_id"])
    return None
