"""The teacher PCA of a new cycle: fitted afresh, and turned onto a warm start's outputs."""

import numpy as np

from faceid_sdk.training._online import fit_teacher_pca, rotate_basis_onto, unit_targets
from faceid_sdk.vectors import l2_normalize


def _teacher_outputs(rng: np.random.Generator, n: int = 600) -> np.ndarray:
    # Most of the variance in 6 of 32 directions, as the teacher's outputs have.
    scales = np.r_[np.linspace(3, 1.5, 6), np.full(26, 0.05)]
    return l2_normalize((rng.normal(size=(n, 32)) * scales) @ np.linalg.qr(
        rng.normal(size=(32, 32)))[0]).astype(np.float32)


def test_the_pca_finds_the_teachers_principal_subspace():
    rng = np.random.default_rng(1)
    t = _teacher_outputs(rng)
    mean, basis = fit_teacher_pca(t, 6)
    assert basis.shape == (6, 32) and mean.shape == (32,)
    np.testing.assert_allclose(basis @ basis.T, np.eye(6), atol=1e-5)
    centred = t - mean
    kept = np.linalg.norm(centred @ basis.T) ** 2 / np.linalg.norm(centred) ** 2
    assert kept > 0.99


def test_a_lost_basis_is_recovered_from_what_the_warm_start_says():
    rng = np.random.default_rng(2)
    t = _teacher_outputs(rng)
    mean, fresh = fit_teacher_pca(t, 6)
    # The basis the model was trained on: the same span, turned and with flipped signs, as a
    # refit on other crops gives; the model matches its targets up to a little noise.
    turn = np.linalg.qr(rng.normal(size=(6, 6)))[0].astype(np.float32)
    lost = turn @ fresh
    said = l2_normalize(unit_targets(t, mean, lost) + rng.normal(scale=0.05, size=(len(t), 6)))

    before = (unit_targets(t, mean, fresh) * said).sum(1).mean()
    rotated = rotate_basis_onto(fresh, unit_targets(t, mean, fresh), said)
    after = (unit_targets(t, mean, rotated) * said).sum(1).mean()

    assert before < 0.5 < 0.99 < after
    np.testing.assert_allclose(rotated, lost, atol=0.02)
    np.testing.assert_allclose(rotated @ rotated.T, np.eye(6), atol=1e-5)
    # A rotation changes no distance between targets: the teacher's geometry is kept.
    a, b = unit_targets(t[:50], mean, fresh), unit_targets(t[:50], mean, rotated)
    np.testing.assert_allclose(a @ a.T, b @ b.T, atol=1e-5)
