"""The online run's distillation-loss probes: the loss of unseen against training crops."""

import numpy as np
import pytest

from faceid_sdk.training._online import distillation_loss, evaluate_heldout, unit_targets


def _linear_student(rng: np.random.Generator):
    w = rng.normal(size=(96 * 96 * 3, 8)).astype(np.float32)

    def model(x, training=False):
        assert training is False
        return x.reshape(len(x), -1) @ w

    return model


def test_unit_targets_are_the_pca_projection_at_unit_length():
    rng = np.random.default_rng(0)
    t256 = rng.normal(size=(5, 16)).astype(np.float32)
    mean = t256.mean(0)
    basis = np.linalg.qr(rng.normal(size=(16, 4)))[0].T.astype(np.float32)
    got = unit_targets(t256, mean, basis)
    assert got.shape == (5, 4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
    want = (t256 - mean) @ basis.T
    np.testing.assert_allclose(got * np.linalg.norm(want, axis=1, keepdims=True), want, rtol=1e-5)


def test_distillation_loss_is_one_minus_the_mean_cosine():
    rng = np.random.default_rng(1)
    model = _linear_student(rng)
    crops = rng.integers(0, 256, (6, 96, 96, 3), dtype=np.uint8)
    s = model(crops.astype(np.float32) / 127.5 - 1.0)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    assert distillation_loss(model, crops, s) == pytest.approx(0.0, abs=1e-5)
    assert distillation_loss(model, crops, -s) == pytest.approx(2.0, abs=1e-5)
    other = rng.normal(size=s.shape).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    assert distillation_loss(model, crops, other) == pytest.approx(
        1.0 - float((s * other).sum(1).mean()), abs=1e-5)


def test_evaluate_heldout_reports_each_probe_next_to_verification():
    rng = np.random.default_rng(2)
    model = _linear_student(rng)
    crops = rng.integers(0, 256, (20, 96, 96, 3), dtype=np.uint8)
    pairs = rng.choice(20, (100, 2))
    same = np.arange(100) % 2 == 0
    s = model(crops.astype(np.float32) / 127.5 - 1.0)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    val = {"celeba_images": crops, "celeba_pairs": pairs, "celeba_same": same,
           "lfw_images": crops, "lfw_pairs": pairs, "lfw_same": same}
    plain = evaluate_heldout(model, val)
    assert set(plain) == {"celeba_acc", "celeba_tar_1e-3", "lfw_acc"}
    probed = evaluate_heldout(model, {**val, "celeba_targets": -s, "train_probe": (crops, s)})
    assert probed["celeba_distill"] == pytest.approx(2.0, abs=1e-5)
    assert probed["train_distill"] == pytest.approx(0.0, abs=1e-5)
    assert not np.isnan(list(plain.values())).any()
    assert {k: probed[k] for k in plain} == plain
