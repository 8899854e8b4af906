"""Turn a training run's float32 weights into the shipped float16 model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["export_run"]


def export_run(
    weights: str | Path,
    out_dir: str | Path,
    *,
    arch: str = "ffem_am",
    embedding_dim: int = 128,
    check_images: np.ndarray | None = None,
    extra_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``weights.npz`` (float16) and ``model.json``; with *check_images* (uint8 96x96),
    measure how far the float16 model's features move from the float32 ones."""
    from faceid_sdk.model import load_default_keras, save_weights_npz

    from ._train import build_arch, embed_images

    model = build_arch(arch, embedding_dim)
    model.load_weights(weights)
    info = save_weights_npz(model, out_dir, extra_info=extra_info)
    if check_images is not None:
        ref = embed_images(model, check_images)
        half = embed_images(load_default_keras(out_dir), check_images)
        dist = np.linalg.norm(ref - half, axis=1)
        info["float16_check"] = {
            "images": len(check_images),
            "max_euclidean_shift": float(dist.max()),
            "mean_euclidean_shift": float(dist.mean()),
        }
        save_weights_npz(model, out_dir, extra_info={**(extra_info or {}), **info})
    return info
