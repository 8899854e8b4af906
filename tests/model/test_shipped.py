"""The shipped FFEM-AM weights: small, fingerprinted, and they tell people apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

import faceid_sdk
from faceid_sdk.alignment import crop_to_model_input, load_image, normalize_pixels

MODEL_DIR = Path(faceid_sdk.__file__).parent / "models" / "ffem_am"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "faces" / "aligned"

pytestmark = pytest.mark.tensorflow


def test_weights_fit_the_paper_budget() -> None:
    """float16 weights stay under the paper's 6.5 MB."""
    assert (MODEL_DIR / "weights.npz").stat().st_size <= 6.5e6


def test_model_json_describes_the_model() -> None:
    """model.json names the id, dimension, input size, template and normalization."""
    info = json.loads((MODEL_DIR / "model.json").read_text())
    assert info["model_id"].startswith(f"ffem-am-{info['embedding_dim']}-")
    assert info["input_size"] == 96
    from faceid_sdk.alignment import TEMPLATE_112

    assert info["alignment"]["template_112"] == TEMPLATE_112.tolist()
    assert "landmarks-regression-retail-0009" in info["alignment"]["landmarks"]
    assert "127.5" in info["pixel_normalization"]


def test_fingerprint_matches_the_weights() -> None:
    """The model_id is recomputed from the weight bytes, not trusted from the file."""
    from faceid_sdk.model import fingerprint

    info = json.loads((MODEL_DIR / "model.json").read_text())
    with np.load(MODEL_DIR / "weights.npz") as z:
        assert info["model_id"].endswith(fingerprint({k: z[k] for k in z.files}))


@pytest.mark.slow
def test_shipped_model_separates_people() -> None:
    """On the fixture (3 unseen people x 2 crops) genuine pairs are clearly closer than
    impostor pairs on average, and features are unit length. (Not every genuine pair beats
    every impostor pair: the shipped model is far from dlib's, see docs/evaluation.md.)"""
    from faceid_sdk.model import load_default_keras

    model = load_default_keras()
    files = sorted(FIXTURES.glob("*/*.jpg"))
    labels = np.array([f.parent.name for f in files])
    x = normalize_pixels(np.stack([crop_to_model_input(load_image(f)) for f in files]))
    emb = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)
    d = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    same = labels[:, None] == labels[None]
    off = ~np.eye(len(files), dtype=bool)
    genuine, impostor = d[same & off], d[~same]
    # Scale-free (the distance scale moves with each model's calibration): the share of
    # (genuine, impostor) pairs in the right order, and a clear gap between the means.
    ordered = (genuine[:, None] < impostor[None, :]).mean()
    assert ordered >= 0.8, ordered
    assert genuine.mean() < impostor.mean() - 0.1
