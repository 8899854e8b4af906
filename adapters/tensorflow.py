"""The TensorFlow backend: the Keras weights themselves, the reference every export is checked
against (``faceid-sdk parity``).

Inference runs in one ``tf.function`` traced once for any batch size: ``model.predict``
costs ~10x more per call for small batches (docs/backends.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._common import DEFAULT_BATCH_SIZE, PhotoMixin, as_faces, batches, check_batch_size, normalized
from ._keras_model import LoadedModel, load_keras

__all__ = ["KerasExtractor"]


class KerasExtractor(PhotoMixin):
    """FFEM-AM in TensorFlow: aligned uint8 faces in, unit float32 vectors out.

    Args:
      weights: see :func:`faceid_adapters._keras_model.load_keras`; ``None`` loads the
        shipped weights.
      batch_size: faces per forward pass.
      model: an already built ``keras.Model`` to wrap instead of loading *weights*
        (training code, tests); then *model_id* is required.
      model_id: the id vectors are tagged with; by default the one of the loaded weights.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        model: Any = None,
        model_id: str | None = None,
    ) -> None:
        import tensorflow as tf

        self.batch_size = check_batch_size(batch_size)
        if model is not None:
            if model_id is None:
                raise ValueError("'model_id' is required with 'model' (got None)")
            loaded = LoadedModel(model, model_id, "in-memory")
        else:
            loaded = load_keras(weights)
        self._loaded = loaded
        self.model_id: str = model_id or loaded.model_id
        self.dim: int = loaded.dim
        self.input_size: int = loaded.input_size
        keras_model = loaded.model
        spec = tf.TensorSpec((None, self.input_size, self.input_size, 3), tf.float32)

        @tf.function(input_signature=[spec])  # type: ignore[untyped-decorator]
        def forward(x: Any) -> Any:
            return keras_model(x, training=False)

        self._forward = forward

    @property
    def model(self) -> Any:
        """The wrapped ``keras.Model``."""
        return self._loaded.model

    @property
    def loaded(self) -> LoadedModel:
        """Model and id together, for ``export_model(..., model=extractor.loaded)``."""
        return self._loaded

    def __repr__(self) -> str:
        return f"<KerasExtractor {self.model_id} dim={self.dim} from {self._loaded.source}>"

    def embed_aligned(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Embed ``(n, 96, 96, 3)`` RGB uint8 faces aligned to the canonical template."""
        array = as_faces(faces, self.input_size)
        out = np.empty((len(array), self.dim), np.float32)
        for part in batches(len(array), self.batch_size):
            out[part] = self._forward(normalized(array[part])).numpy()
        return out
