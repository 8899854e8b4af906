"""Where Keras weights come from: the shipped model, a model folder, or a weights file.

Every exporter and the parity check take the same ``weights`` argument, so a command that
runs today on test weights runs unchanged on the shipped ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from faceid_sdk.errors import BackendUnavailableError

__all__ = ["LoadedModel", "calibrated_model_dir", "load_keras"]


@attrs.frozen
class LoadedModel:
    """A Keras model and the id its vectors carry."""

    model: Any = attrs.field(repr=False)
    model_id: str
    source: str

    @property
    def dim(self) -> int:
        return int(self.model.output_shape[-1])

    @property
    def input_size(self) -> int:
        return int(self.model.input_shape[1])


def load_keras(weights: str | Path | None = None) -> LoadedModel:
    """Load FFEM-AM with float32 compute.

    Args:
      weights: ``None`` for the weights shipped in ``faceid_sdk/models/ffem_am``; a model
        folder (``model.json`` + ``weights.npz``, as written by
        ``faceid_sdk.model.save_weights_npz``); a float16 ``.npz``; a ``.keras`` file; or a
        ``.weights.h5`` file (FFEM-AM with a 128-d output).
    """
    from faceid_sdk.model import build_ffem_am, load_default_keras, load_weights_npz
    from faceid_sdk.model._weights import fingerprint, load_model_info

    if weights is None:
        try:
            info = load_model_info()
        except FileNotFoundError:
            raise BackendUnavailableError(
                "this installation ships no FFEM-AM weights (faceid_sdk/models/ffem_am/model.json "
                "not found): pass weights=<model folder or file>, or reinstall faceid-sdk"
            ) from None
        return LoadedModel(load_default_keras(), str(info["model_id"]), "shipped")
    path = Path(weights)
    if path.is_dir():
        info = load_model_info(path)
        return LoadedModel(load_default_keras(path), str(info["model_id"]), str(path))
    if not path.is_file():
        raise FileNotFoundError(
            "'weights' must be a model folder, .npz, .keras or .weights.h5 file "
            f"(got {str(path)!r}, which does not exist)"
        )
    if path.suffix == ".npz":
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        bias = arrays.get("embedding_conv/bias")
        dim = int(bias.shape[0]) if bias is not None else 128
        model = build_ffem_am(dim)
        load_weights_npz(model, path)
        return LoadedModel(model, f"ffem-am-{dim}-{fingerprint(arrays)}", str(path))
    if path.name.endswith(".keras"):
        import keras

        model = keras.saving.load_model(path, compile=False)
        return LoadedModel(model, _id_from_model(model), str(path))
    if path.name.endswith(".weights.h5"):
        model = build_ffem_am()
        model.load_weights(path)
        return LoadedModel(model, _id_from_model(model), str(path))
    raise ValueError(
        f"'weights' must be a model folder, .npz, .keras or .weights.h5 file (got {path.name!r})"
    )


def _id_from_model(model: Any) -> str:
    from faceid_sdk.model._weights import fingerprint

    arrays = {w.path: np.asarray(w.numpy(), np.float16) for w in model.weights}
    return f"ffem-am-{int(model.output_shape[-1])}-{fingerprint(arrays)}"


def calibrated_model_dir(
    directory: str | Path, *, seed: int = 0, faces: Any = None, embedding_dim: int = 128
) -> Path:
    """Write a model folder of deterministic random FFEM-AM weights with calibrated batch norm.

    An untrained network maps every input to nearly the same vector (~1e-12 apart), which
    would make any parity check pass vacuously. Setting each batch-norm layer's moving
    statistics to the statistics of a real batch keeps activations O(1) through the whole
    network, so different faces get clearly different vectors (cosines ~0.6-0.7), like a
    trained model. For tests and for development until trained weights ship.

    Args:
      directory: where ``weights.npz`` and ``model.json`` are written (the shipped layout).
      seed: seeds the weight initializers and the synthetic calibration batch.
      faces: ``(n, 96, 96, 3)`` uint8 crops to calibrate on; default: 16 smooth random images.
      embedding_dim: feature length.
    """
    import keras

    from faceid_sdk.alignment import normalize_pixels
    from faceid_sdk.model import build_ffem_am, save_weights_npz

    keras.utils.set_random_seed(seed)
    model = build_ffem_am(embedding_dim)
    if faces is None:
        faces = _smooth_images(np.random.default_rng(seed), 16, int(model.input_shape[1]))
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    # With momentum 0 one training-mode pass stores exactly the batch statistics, and since
    # every upstream layer was normalized with those same statistics, inference on that
    # batch reproduces the training-mode activations layer by layer.
    for layer in bn:
        layer.momentum = 0.0
    model(normalize_pixels(faces), training=True)
    for layer in bn:
        layer.momentum = 0.999
    directory = Path(directory)
    save_weights_npz(
        model,
        directory,
        extra_info={"note": f"random weights (seed {seed}) with calibrated batch norm: tests only"},
    )
    return directory


def _smooth_images(rng: np.random.Generator, n: int, size: int) -> Any:
    """Random low-frequency RGB images: closer to photo statistics than white noise."""
    coarse = rng.uniform(0, 255, (n, 6, 6, 3))
    reps = -(-size // 6)
    images = np.repeat(np.repeat(coarse, reps, axis=1), reps, axis=2)[:, :size, :size]
    noise = rng.normal(0, 12, images.shape)
    return np.clip(images + noise, 0, 255).astype(np.uint8)

