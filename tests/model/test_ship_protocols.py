"""The protocols ship.py reports, on synthetic embeddings whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from faceid_sdk.training.ship import _closed_set, _open_set, mirror_averaged, orl_table


def _people(n_people: int, per: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 128))
    emb = np.repeat(centres, per, axis=0) + spread * rng.normal(size=(n_people * per, 128))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.repeat([f"p{i}" for i in range(n_people)], per)
    return emb.astype(np.float32), labels


def test_closed_set_names_everyone_when_people_are_apart():
    emb, labels = _people(60, 6, spread=0.05)
    got = _closed_set(emb, labels)
    assert got["people"] == 52 and got["held_out_per_person"] == 2
    assert got["accuracy"] == 1.0


def test_closed_set_is_chance_when_photos_say_nothing():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(60 * 6, 128)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.repeat([f"p{i}" for i in range(60)], 6)
    got = _closed_set(emb, labels)
    assert got["accuracy"] < 0.1  # chance is 1/52


def test_closed_set_skips_people_with_too_few_photos():
    emb, labels = _people(40, 6, spread=0.05)
    emb3, labels3 = _people(10, 3, spread=0.05, seed=2)
    labels = np.concatenate([labels, np.char.add("q", labels3)])
    got = _closed_set(np.concatenate([emb, emb3]), labels)
    assert got["people"] == 40


@pytest.mark.parametrize("threshold, named, strangers", [(2.1, 1.0, 1.0), (0.5, 1.0, 0.0)])
def test_open_set_names_enrolled_people_and_refuses_strangers(threshold, named, strangers):
    emb, labels = _people(20, 5, spread=0.05)
    got = _open_set(emb, labels, threshold, seeds=2)
    assert got["enrolled_people"] == 10
    assert got["named_correctly"] == named and got["strangers_named"] == strangers


def test_the_orl_table_lists_only_the_rows_that_measured_it():
    emb, labels = _people(40, 10, spread=0.05)
    row = {"name": "m", "orl": {"closed_set": _closed_set(emb, labels), "open_set": {
        k: _open_set(emb, labels, 0.5, seeds=1) for k in ("far_1e-3", "far_1e-4")}}}
    table = orl_table([row, {"name": "old"}]).splitlines()
    assert len(table) == 3 and table[2] == "| m | 100.0 ± 0.0 | 100.0 / 0.0 | 100.0 / 0.0 |"
    assert orl_table([{"name": "old"}]) == ""


def test_mirror_averaging_gives_a_photo_and_its_mirror_one_unit_embedding():
    rng = np.random.default_rng(3)
    projection = rng.normal(size=(12 * 12 * 3, 16))

    def embed(crops):  # a linear embedder that is not mirror-symmetric
        return crops.reshape(len(crops), -1).astype(np.float64) @ projection

    crops = rng.integers(0, 256, size=(5, 12, 12, 3)).astype(np.uint8)
    both = mirror_averaged(embed)
    got, got_mirrored = both(crops), both(crops[:, :, ::-1])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got, got_mirrored, rtol=1e-6, atol=1e-9)
    plain = embed(crops) / np.linalg.norm(embed(crops), axis=1, keepdims=True)
    assert np.abs(got - plain).max() > 0.05


def test_the_model_card_names_face_mixing_only_when_the_run_used_it():
    from faceid_sdk.training.ship import _mixing

    assert _mixing({"mix_faces": 0.0}) == "" and _mixing({}) == ""
    text = _mixing({"mix_faces": 0.5})
    assert "50%" in text and "--mix-faces 0.5" in text


def test_the_model_card_says_where_the_warm_starts_teacher_pca_came_from(tmp_path):
    from faceid_sdk.training.ship import _warm_start

    basis = {"mean": np.zeros(4), "basis": np.eye(2, 4)}
    np.savez(tmp_path / "teacher_pca.npz", **basis)
    assert "rotated onto the previous model's outputs" in _warm_start({}, tmp_path)
    assert "runs/x/teacher_pca.npz" in _warm_start({"teacher_pca": "runs/x/teacher_pca.npz"},
                                                    tmp_path)
    np.savez(tmp_path / "teacher_pca.npz", head_w=np.zeros((3, 2)), **basis)
    assert "ridge regression" in _warm_start({}, tmp_path)


def test_the_model_card_quotes_the_throughput_its_own_log_measured(tmp_path):
    from faceid_sdk.training._online import PROGRESS_LINE
    from faceid_sdk.training.ship import _throughput

    assert _throughput(tmp_path) == "Throughput not logged"
    lines = [PROGRESS_LINE % (50 * i, 0.27, 0.009, rate, 0, 1e-4)
             for i, rate in enumerate([60.0, 73.6, 66.7])]
    (tmp_path / "train.log").write_text("\n".join([*lines, "step 3000 held-out: {}"]))
    assert _throughput(tmp_path) == "About 67 images/s (median of 3 log reports)"
