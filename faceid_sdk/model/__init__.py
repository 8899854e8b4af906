"""Keras builders and weights of the FFEM-AM feature extractor (needs ``faceid-sdk[tensorflow]``).

Not imported by ``import faceid_sdk``: TensorFlow loads only when this package is used.
"""

from __future__ import annotations

from ._builders import (
    FFEM_AM_BLOCKS,
    MOBILENET_V2_BLOCKS,
    build_ffem_am,
    build_mobilenet_v2,
    build_shufflenet_v2,
    eca_kernel_size,
)
from ._stats import ModelStats, model_stats
from ._weights import (
    fingerprint,
    load_default_keras,
    load_model_info,
    load_weights_npz,
    save_weights_npz,
)

__all__ = [
    "FFEM_AM_BLOCKS",
    "MOBILENET_V2_BLOCKS",
    "ModelStats",
    "build_ffem_am",
    "build_mobilenet_v2",
    "build_shufflenet_v2",
    "eca_kernel_size",
    "fingerprint",
    "load_default_keras",
    "load_model_info",
    "load_weights_npz",
    "model_stats",
    "save_weights_npz",
]
