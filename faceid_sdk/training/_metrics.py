"""Face verification and identification metrics on L2-normalized embeddings (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "make_pairs",
    "pair_distances",
    "rank1_identification",
    "roc_curve",
    "tar_at_far",
    "threshold_for_far",
    "verification_10fold",
]

F32 = npt.NDArray[np.float32]


def make_pairs(
    labels: npt.NDArray[Any], seed: int = 0, max_genuine: int = 6000
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """All genuine pairs (capped, seeded) and as many impostor pairs drawn at random."""
    rng = np.random.default_rng(seed)
    same = labels[:, None] == labels[None, :]
    iu = np.triu_indices(len(labels), 1)
    gen = np.stack(iu, 1)[same[iu]]
    if len(gen) > max_genuine:
        gen = gen[rng.choice(len(gen), max_genuine, replace=False)]
    imp: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    while len(imp) < len(gen):
        i, j = sorted(rng.choice(len(labels), 2, replace=False).tolist())
        if labels[i] != labels[j] and (i, j) not in seen:
            seen.add((i, j))
            imp.append((i, j))
    pairs = np.concatenate([gen, np.array(imp, np.int64).reshape(-1, 2)])
    issame = np.concatenate([np.ones(len(gen), bool), np.zeros(len(imp), bool)])
    return pairs, issame


def pair_distances(emb: F32, pairs: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Euclidean (not squared) distances between the rows of each pair."""
    d = emb[pairs[:, 0]].astype(np.float64) - emb[pairs[:, 1]]
    out: npt.NDArray[np.float64] = np.sqrt((d * d).sum(1))
    return out


def _best_threshold(dist: npt.NDArray[np.float64], issame: npt.NDArray[np.bool_]) -> float:
    cands = np.unique(dist)
    cands = np.concatenate([cands, [cands[-1] + 1e-6]])
    order = np.argsort(dist)
    ds, ss = dist[order], issame[order]
    # accuracy at threshold t (accept d < t) for every candidate, in one pass
    pos_below = np.concatenate([[0], np.cumsum(ss)])
    neg_below = np.concatenate([[0], np.cumsum(~ss)])
    k = np.searchsorted(ds, cands, side="left")
    acc = pos_below[k] + (neg_below[-1] - neg_below[k])
    best = int(np.argmax(acc))
    # Halfway between the last accepted and the first rejected distance: the widest margin.
    return float(cands[best] if best == 0 else 0.5 * (cands[best - 1] + cands[best]))


def verification_10fold(
    dist: npt.NDArray[np.float64], issame: npt.NDArray[np.bool_], folds: int = 10, seed: int = 0
) -> dict[str, float]:
    """LFW-style accuracy: pick the threshold on 9 folds, measure on the 10th, average."""
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(dist)) % folds
    accs, ths = [], []
    for f in range(folds):
        tr, te = fold != f, fold == f
        th = _best_threshold(dist[tr], issame[tr])
        accs.append(float(np.mean((dist[te] < th) == issame[te])))
        ths.append(th)
    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "threshold": float(np.mean(ths)),
    }


def roc_curve(
    dist: npt.NDArray[np.float64], issame: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(FAR, TAR, threshold) for every distinct threshold, accepting ``d <= threshold``."""
    order = np.argsort(dist, kind="stable")
    ds, ss = dist[order], issame[order]
    tar = np.cumsum(ss) / max(1, ss.sum())
    far = np.cumsum(~ss) / max(1, (~ss).sum())
    return far, tar, ds


def threshold_for_far(
    dist: npt.NDArray[np.float64], issame: npt.NDArray[np.bool_], far: float
) -> float:
    """Largest distance threshold whose impostor acceptance stays at or below *far*."""
    imp = np.sort(dist[~issame])
    k = int(np.floor(far * len(imp)))
    if k <= 0:
        return float(imp[0]) - 1e-9
    return float(imp[k - 1])


def tar_at_far(dist: npt.NDArray[np.float64], issame: npt.NDArray[np.bool_], far: float) -> float:
    th = threshold_for_far(dist, issame, far)
    return float(np.mean(dist[issame] <= th))


def rank1_identification(
    gallery: F32, gallery_labels: npt.NDArray[Any], probe: F32, probe_labels: npt.NDArray[Any]
) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Rank-1 accuracy of nearest-neighbour search, plus each probe's nearest distance/index."""
    d2 = (
        (probe**2).sum(1)[:, None] + (gallery**2).sum(1)[None, :] - 2.0 * probe @ gallery.T
    ).astype(np.float64)
    nn = np.argmin(d2, 1)
    dist = np.sqrt(np.maximum(d2[np.arange(len(probe)), nn], 0.0))
    acc = float(np.mean(gallery_labels[nn] == probe_labels))
    return acc, dist, nn
