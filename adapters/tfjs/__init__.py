"""The TF.js export (what the browser loads) and the Node run of it used by the parity check.

The path that works with Keras 3 (measured, see docs/backends.md): ``model.export()`` writes a
SavedModel, ``tensorflowjs_converter --input_format tf_saved_model`` turns it into a TF.js
*graph* model, and the browser loads it with ``tf.loadGraphModel``. (A Keras 3 model
converted to a TF.js *layers* model does not load in tfjs 4.22.)

The converter lives in its own virtual environment, ``.venv-tfjs`` (``make tfjs-setup``):
the ``tensorflowjs`` package pins dependencies that would replace this project's TensorFlow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from faceid_sdk.errors import BackendUnavailableError

if TYPE_CHECKING:
    from .._keras_model import LoadedModel

__all__ = [
    "HERE",
    "convert_saved_model",
    "converter_path",
    "export_tfjs",
    "node_modules_ready",
    "run_node",
]

#: This folder: ``parity.mjs``, ``package.json`` and (after ``npm ci``) ``node_modules``.
HERE = Path(__file__).resolve().parent
_REPO = HERE.parent.parent
_SETUP_HINT = "run `make tfjs-setup` in the repository (venv .venv-tfjs + npm ci)"


def converter_path() -> Path:
    """``tensorflowjs_converter``: ``$FACEID_TFJS_CONVERTER``, ``.venv-tfjs``, or ``PATH``."""
    candidates = [
        os.environ.get("FACEID_TFJS_CONVERTER"),
        str(_REPO / ".venv-tfjs" / "bin" / "tensorflowjs_converter"),
        shutil.which("tensorflowjs_converter"),
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise BackendUnavailableError(f"the TF.js converter is not installed: {_SETUP_HINT}")


#: ``quantize="mixed"``: these weights are stored as float16, every other one as uint8. The
#: stem and bottlenecks 0-8 (a sixth of the weights, where an early rounding error travels
#: through the whole network), every depthwise kernel (folded batch norm leaves channels of
#: very different ranges in one tensor) and every small tensor (biases, the attention's
#: kernels). Measured on 96 aligned LFW faces against the float32 Keras model (Euclidean
#: distance of unit vectors, median / max): uint8 0.044 / 0.084 at 2.19 MB, mixed 0.019 /
#: 0.025 at 2.48 MB, float16 0.001 / 0.002 at 4.38 MB.
MIXED_FLOAT16 = (
    "*stem_conv*", "*block_[0-8]_*", "*depthwise*", "*batchnorm*", "*eca*", "*Squeeze*",
)


def export_tfjs(loaded: LoadedModel, target: Path, quantize: str | None = None) -> None:
    """Write the TF.js graph model of *loaded* into the folder *target* (``model.json`` + shards).

    The graph model's ``userDefinedMetadata.faceid`` records the model id, dimension and
    input normalization, so the browser can tag its vectors with the right ``model_id``.
    """
    from ..export import metadata

    with tempfile.TemporaryDirectory(prefix="faceid-tfjs-") as tmp:
        saved = Path(tmp) / "saved_model"
        loaded.model.export(str(saved), format="tf_saved_model", verbose=False)
        convert_saved_model(saved, target, quantize, {"faceid": metadata(loaded, quantize)})


def convert_saved_model(
    saved: Path, target: Path, quantize: str | None, metadata: dict[str, Any]
) -> None:
    """``tensorflowjs_converter`` from the SavedModel *saved* into the folder *target*, with
    *metadata* (``{key: json-able}``) in the graph model's ``userDefinedMetadata``."""
    converter = converter_path()
    with tempfile.TemporaryDirectory(prefix="faceid-tfjs-") as tmp:
        cmd = [
            str(converter),
            "--input_format=tf_saved_model",
            "--output_format=tfjs_graph_model",
            "--signature_name=serving_default",
            "--saved_model_tags=serve",
        ]
        for key, value in metadata.items():
            meta = Path(tmp) / f"{key}.json"
            meta.write_text(json.dumps(value))
            cmd.append(f"--metadata={key}:{meta}")
        if quantize == "mixed":
            # A bare --quantize_uint8 is the fallthrough: it must not precede a path.
            cmd += ["--quantize_uint8", "--quantize_float16=" + ",".join(MIXED_FLOAT16)]
        elif quantize:
            cmd.append(f"--quantize_{quantize}=*")
        staging = Path(tmp) / "tfjs"
        cmd += [str(saved), str(staging)]
        # The converter prints TensorFlow's start-up noise; keep it for the error message only.
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"tensorflowjs_converter failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-2000:]}"
            )
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(staging, target)


def node_modules_ready() -> bool:
    """Whether ``npm ci`` has installed @tensorflow/tfjs and the wasm backend here."""
    return (HERE / "node_modules" / "@tensorflow" / "tfjs-backend-wasm").is_dir()


def run_node(
    model_dir: Path,
    faces_npy: Path,
    *,
    repeats: int = 0,
    node: str = "node",
    timeout: float = 300.0,
) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """Run the TF.js graph model in *model_dir* on the faces in *faces_npy* with Node + wasm.

    Returns the ``(n, dim)`` outputs and the script's report (backend, timings per face at
    batch 1 and 32 when *repeats* > 0).
    """
    if shutil.which(node) is None:
        raise BackendUnavailableError(f"Node.js ({node!r}) is not on PATH: install Node >= 18")
    if not node_modules_ready():
        raise BackendUnavailableError(f"@tensorflow/tfjs is not installed in {HERE}: {_SETUP_HINT}")
    with tempfile.TemporaryDirectory(prefix="faceid-node-") as tmp:
        out = Path(tmp) / "embeddings.f32"
        cmd = [
            node,
            str(HERE / "parity.mjs"),
            "--model", str(model_dir / "model.json"),
            "--faces", str(faces_npy),
            "--out", str(out),
            "--repeats", str(repeats),
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=timeout, cwd=HERE
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"node parity.mjs failed (exit {proc.returncode}): {proc.stderr[-2000:]}"
            )
        report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        data = np.fromfile(out, dtype="<f4").reshape(report["shape"])
    return data.astype(np.float32), report
