"""Evaluation metrics and splits of faceid_sdk.training (numpy only, fast)."""

from __future__ import annotations

import numpy as np

from faceid_sdk.training._data import closed_set_split, unseen_celeba_ids
from faceid_sdk.training._metrics import (
    make_pairs,
    pair_distances,
    rank1_identification,
    tar_at_far,
    threshold_for_far,
    verification_10fold,
)


def _clusters(n_ids: int = 20, per: int = 5, spread: float = 0.1, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, 32))
    x = np.repeat(centres, per, 0) + spread * rng.normal(size=(n_ids * per, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(n_ids), per)


def test_pairs_are_balanced_and_labelled() -> None:
    """Genuine pairs share a label, impostor pairs do not, and there are as many of each."""
    _, labels = _clusters()
    pairs, same = make_pairs(labels)
    assert same.sum() == (~same).sum()
    assert np.array_equal(labels[pairs[:, 0]] == labels[pairs[:, 1]], same)


def test_separable_clusters_verify_perfectly() -> None:
    """Tight, well separated identities give 100% accuracy, TAR 1 at FAR 1e-3, rank-1 1."""
    emb, labels = _clusters(spread=0.05)
    pairs, same = make_pairs(labels)
    dist = pair_distances(emb, pairs)
    assert verification_10fold(dist, same)["accuracy"] == 1.0
    assert tar_at_far(dist, same, 1e-3) == 1.0
    acc, _, _ = rank1_identification(emb[::5], labels[::5], emb[1::5], labels[1::5])
    assert acc == 1.0


def test_random_embeddings_verify_at_chance() -> None:
    """Features that ignore identity sit near 50% accuracy."""
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(200, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.repeat(np.arange(40), 5)
    pairs, same = make_pairs(labels)
    assert 0.4 < verification_10fold(pair_distances(emb, pairs), same)["accuracy"] < 0.6


def test_threshold_for_far_bounds_the_false_accepts() -> None:
    """Accepting d <= threshold lets through at most the target fraction of impostors."""
    rng = np.random.default_rng(2)
    dist = rng.uniform(0, 2, 4000)
    same = rng.uniform(size=4000) < 0.5
    for far in (1e-3, 1e-2, 0.1):
        th = threshold_for_far(dist, same, far)
        assert np.mean(dist[~same] <= th) <= far


def test_closed_set_split_holds_out_two_per_identity() -> None:
    """Two images per identity with >= 4 images are held out; smaller identities keep all."""
    labels = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 4)
    test = closed_set_split(labels)
    assert test[labels == "a"].sum() == 2
    assert test[labels == "b"].sum() == 0
    assert test[labels == "c"].sum() == 2
    assert np.array_equal(test, closed_set_split(labels)), "the split is seeded"


def test_unseen_split_is_fixed() -> None:
    """The committed unseen split names 60 distinct CelebA identities."""
    ids = unseen_celeba_ids()
    assert len(ids) == len(set(ids)) == 60
    assert all(i.isdigit() for i in ids)
