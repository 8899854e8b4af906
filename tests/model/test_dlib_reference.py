"""dlib's descriptor, the evaluation's reference row: found without pkg_resources, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlib")

from faceid_sdk.training.dlib_reference import DlibDescriptor, model_path

FACES = Path(__file__).parents[1] / "fixtures" / "faces" / "aligned"


def test_model_files_are_found_without_importing_the_models_package():
    assert Path(model_path("shape_predictor_5_face_landmarks.dat")).is_file()
    with pytest.raises(ImportError, match="missing"):
        model_path("no_such_model.dat")


def test_descriptors_tell_the_fixture_people_apart_and_are_cached(tmp_path, monkeypatch):
    import cv2

    files = sorted(FACES.glob("*/*.jpg"))
    crops = np.stack([cv2.imread(str(f))[:, :, ::-1] for f in files])
    people = np.array([f.parent.name for f in files])
    cache = tmp_path / "dlib.npz"
    emb = DlibDescriptor(cache)(crops)
    assert emb.shape == (len(files), 128)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    d = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    same = people[:, None] == people[None]
    off = ~np.eye(len(files), dtype=bool)
    assert d[same & off].max() < d[~same].min()
    # a second descriptor over the same cache does not run dlib again
    again = DlibDescriptor(cache)
    monkeypatch.setattr(again, "_compute", lambda _: pytest.fail("recomputed"))
    assert np.array_equal(again(crops), emb)
