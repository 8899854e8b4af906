"""What template protection costs in accuracy, measured on real face embeddings.

    python benchmarks/bench_template_protection.py [--cache data-cache/pins.npz ...]

Compares, on the same verification pairs and the same 1:N split:

* raw Euclidean matching (what the SDK does);
* the SDK's keyed rotation (TemplateProtector): must be identical;
* bit-projection hashing: sign of b random projections, Hamming distance (a common
  "cancelable biometrics" scheme, irreversible only in the sense that bits are lost).

It also reports open-set figures (1 - (1 - FMR)^N), how many identities a forged "centroid"
vector falls within the calibrated threshold of, and how many known pairs recover a
rotation key. Embeddings: the ``teacher`` arrays of the training caches (a 128-d face
model that FFEM-AM is distilled from), L2-normalized; rerun with FFEM-AM embeddings
(``--npz FILE`` holding ``embeddings`` and ``labels``) once a trained model exists.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from faceid_sdk import TemplateProtector, calibrate_threshold, impostor_match_probability
from faceid_sdk.training._metrics import make_pairs, pair_distances, verification_10fold


def load(caches: list[str], npz: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    if npz:
        with np.load(npz, allow_pickle=False) as data:
            emb, labels = data["embeddings"].astype(np.float32), data["labels"]
        source = npz
    else:
        parts, names = [], []
        for path in caches:
            with np.load(path, allow_pickle=False) as data:
                parts.append(data["teacher"].astype(np.float32))
                names.append(np.char.add(Path(path).stem + ":", data["labels"].astype(str)))
        emb, labels = np.concatenate(parts), np.concatenate(names)
        source = "teacher embeddings of " + ", ".join(caches)
    norms = np.linalg.norm(emb, axis=1)
    keep = norms > 0  # faces the teacher could not embed are stored as zeros
    emb, labels = emb[keep] / norms[keep, None], labels[keep]
    return np.ascontiguousarray(emb, dtype=np.float32), labels, source


def tar_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> tuple[float, float]:
    """TAR with a threshold calibrated (strict <) so impostor acceptance <= far."""
    cal = calibrate_threshold(scores[~issame], far)
    return float(np.mean(scores[issame] < cal.threshold)), cal.threshold


def hamming(codes: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    return np.count_nonzero(codes[pairs[:, 0]] != codes[pairs[:, 1]], axis=1).astype(np.float64)


def rank1(gallery: np.ndarray, g_labels: np.ndarray, probes: np.ndarray, p_labels: np.ndarray,
          metric: str) -> float:
    if metric == "l2":
        d = -2.0 * probes @ gallery.T  # + constants: argmin of L2 on unit vectors
    else:
        d = (probes[:, None, :] != gallery[None, :, :]).sum(2)
    return float(np.mean(g_labels[np.argmin(d, axis=1)] == p_labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", action="append", default=None)
    parser.add_argument("--npz", default=None)
    parser.add_argument("--bits", type=int, nargs="*", default=[64, 128, 256, 512, 1024])
    args = parser.parse_args()
    emb, labels, source = load(args.cache or ["data-cache/pins.npz", "data-cache/celeba.npz"],
                               args.npz)
    dim = emb.shape[1]
    pairs, issame = make_pairs(labels, seed=0, max_genuine=20_000)
    # 1:N split: first image of each identity with >= 2 images is the gallery.
    first: dict[str, int] = {}
    for i, name in enumerate(labels):
        first.setdefault(str(name), i)
    counts = {n: int(c) for n, c in zip(*np.unique(labels, return_counts=True), strict=True)}
    g_idx = np.array([i for n, i in first.items() if counts[n] >= 2])
    p_idx = np.array([i for i in range(len(labels)) if counts[str(labels[i])] >= 2
                      and first[str(labels[i])] != i])
    print(f"# Template protection on {len(emb)} embeddings, {len(counts)} identities ({source})")
    print(f"{issame.sum()} genuine and {(~issame).sum()} impostor pairs; 1:N: gallery "
          f"{len(g_idx)}, probes {len(p_idx)}\n")
    print("| scheme | stored bytes/template | 10-fold acc % | TAR@FAR=1e-3 % | rank-1 % |")
    print("|---|---|---|---|---|")

    def row(name: str, size: int, scores: np.ndarray, r1: float) -> None:
        acc = verification_10fold(scores, issame)["accuracy"]
        tar, _ = tar_at_far(scores, issame, 1e-3)
        print(f"| {name} | {size} | {100 * acc:.2f} | {100 * tar:.2f} | {100 * r1:.2f} |")

    raw = pair_distances(emb, pairs)
    row("raw float32, Euclidean", 4 * dim, raw, rank1(emb[g_idx], labels[g_idx], emb[p_idx],
                                                      labels[p_idx], "l2"))
    rotated = TemplateProtector(bytes(range(32)), dim).protect(emb)
    rot = pair_distances(rotated, pairs)
    assert np.abs(rot - raw).max() < 1e-5
    row("keyed rotation (SDK)", 4 * dim, rot, rank1(rotated[g_idx], labels[g_idx],
                                                    rotated[p_idx], labels[p_idx], "l2"))
    rng = np.random.default_rng(1)
    for bits in args.bits:
        projection = rng.standard_normal((dim, bits))
        codes = (emb @ projection) > 0
        row(f"sign of {bits} random projections, Hamming", bits // 8, hamming(codes, pairs),
            rank1(codes[g_idx], labels[g_idx], codes[p_idx], labels[p_idx], "hamming"))

    _, threshold = tar_at_far(raw, issame, 1e-3)
    print(f"\n## Open-set risk at the FAR=1e-3 threshold ({threshold:.3f})\n")
    print("| gallery size N | P(impostor matches someone) at FMR 1e-3 | at FMR 1e-4 "
          "| at FMR 1e-6 |")
    print("|---|---|---|---|")
    for n in (100, 1_000, 10_000, 100_000):
        cells = [f"{100 * impostor_match_probability(f, n):.1f} %" for f in (1e-3, 1e-4, 1e-6)]
        print(f"| {n:,} | " + " | ".join(cells) + " |")

    gallery = emb[g_idx]
    centroid = gallery.mean(0)
    centroid /= np.linalg.norm(centroid)
    d_c = np.linalg.norm(gallery - centroid, axis=1)
    print(f"\n## Forged vectors\n\nNormalized centroid of the {len(gallery)}-identity gallery: "
          f"nearest at {d_c.min():.3f}, {int(np.sum(d_c < threshold))} identities under the "
          f"FAR=1e-3 threshold {threshold:.3f}, {int(np.sum(d_c < 0.5))} under 0.5.")
    print("The zero vector is refused by every entry point (norm check).")

    p = TemplateProtector(bytes(range(32)), dim)
    print("\n## Key recovery from known (raw, protected) pairs (orthogonal Procrustes)\n")
    print("| known pairs | max error of the recovered matrix | held-out faces: mean distance "
          "of the recovered raw vector to the true one | share recovered within 0.1 |")
    print("|---|---|---|---|")
    order = np.random.default_rng(2).permutation(len(emb))
    known, held_out = order[:512], order[512:]
    stolen = p.protect(emb[held_out])
    for n in (16, 32, 64, 128, 256, 512):
        x = emb[known[:n]].astype(np.float64)
        u, _, vt = np.linalg.svd(x.T @ p.protect(emb[known[:n]]))
        recovered = (u @ vt).T
        err = np.linalg.norm(stolen @ recovered - emb[held_out], axis=1)
        print(f"| {n} | {np.abs(recovered - p.matrix).max():.2e} | {err.mean():.3f} | "
              f"{100 * np.mean(err < 0.1):.1f} % |")
    t = time.perf_counter()
    for _ in range(10):
        p.protect(emb[:1])
    print(f"\nprotect() of one query: {(time.perf_counter() - t) / 10 * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
