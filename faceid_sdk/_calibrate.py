"""Open-set risk: how often a stranger matches *someone*, and the threshold that bounds it.

A threshold chosen for a 1:1 false match rate (FMR) is not the 1:N false-positive
identification rate (FPIR): a non-enrolled face is compared with every one of N
identities, and matching any of them is a false positive. For independent comparisons
``FPIR = 1 - (1 - FMR)^N`` (63% at FMR 1e-4 and N = 10,000). Real galleries are not
independent, so the honest way to set a 1:N threshold is to search non-enrolled probes
against the real gallery and calibrate on their *nearest* distances, which is what
:func:`calibrate_threshold` does when it is given those distances.

Framework-free (NumPy only) so that the core, the CLI and ``faceid_sdk.training`` share it.
Distances are Euclidean and a match is ``distance < threshold``, exactly as in the Matcher.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from .errors import InvalidFeatureError

__all__ = [
    "Calibration",
    "OperatingPoint",
    "PeopleCalibration",
    "calibrate_on_people",
    "calibrate_threshold",
    "fmr_for_fpir",
    "impostor_match_probability",
]


def _rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise InvalidFeatureError(
            f"{name} must be a number in [0, 1] (got {value!r} that is a "
            f"<{type(value).__name__}>)",
            code="rate",
        )
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise InvalidFeatureError(
            f"{name} must be a probability in [0, 1] (got {value!r}): write 1e-4, not 0.01%",
            code="rate",
        )
    return rate


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidFeatureError(
            f"gallery_size must be an int >= 0 (got {value!r}): the number of enrolled identities",
            code="gallery_size",
        )
    return int(value)


def impostor_match_probability(fmr: float, gallery_size: int) -> float:
    """Chance that one impostor search matches at least one of *gallery_size* identities.

    ``1 - (1 - fmr) ** gallery_size``, computed without the round-off that the direct
    formula suffers at small *fmr*. Assumes independent comparisons: a lower bound in
    practice, because look-alikes cluster.

    >>> round(impostor_match_probability(1e-4, 10_000), 3)
    0.632
    """
    rate, n = _rate(fmr, "fmr"), _size(gallery_size)
    if rate == 1.0:
        return 1.0 if n else 0.0
    return -math.expm1(n * math.log1p(-rate))


def fmr_for_fpir(fpir: float, gallery_size: int) -> float:
    """The 1:1 false match rate each comparison may have so that 1:N stays at *fpir*.

    The inverse of :func:`impostor_match_probability`: ``1 - (1 - fpir) ** (1 / N)``,
    about ``fpir / N``. An FPIR of 1% over 10,000 people needs an FMR near 1e-6.
    """
    rate, n = _rate(fpir, "fpir"), _size(gallery_size)
    if n == 0:
        return 1.0
    if rate == 1.0:
        return 1.0
    return -math.expm1(math.log1p(-rate) / n)


@attrs.frozen
class Calibration:
    """A threshold chosen so that at most ``target`` of the impostor distances fall under it.

    ``achieved`` is the fraction of the given impostor distances strictly under
    ``threshold`` (never above ``target``); ``resolution`` is ``1 / scores``, the smallest
    rate the sample can measure; ``reliable`` is false when fewer than 10 impostors would
    be accepted at the target (``target * scores < 10``): the estimate is then mostly noise,
    so collect more non-mated probes.
    """

    threshold: float
    target: float
    achieved: float
    scores: int
    resolution: float
    reliable: bool


def calibrate_threshold(impostor_distances: Any, target: float) -> Calibration:
    """The largest threshold under which at most *target* of *impostor_distances* fall.

    For a 1:N false-positive identification rate, pass the **nearest** distance of each
    non-mated search (a probe of someone not enrolled, searched against the gallery you
    will deploy): the result bounds FPIR at *target* on that sample. For a 1:1 false match
    rate, pass distances of impostor pairs. Accepting is ``distance < threshold``, as in
    :class:`~faceid_sdk.Matcher`, so the returned threshold equals an impostor distance
    that is itself rejected.
    """
    rate = _rate(target, "target")
    try:
        scores = np.asarray(impostor_distances, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidFeatureError(
            f"impostor_distances must be numbers (got {type(impostor_distances).__name__}: {exc})",
            code="scores",
        ) from None
    if scores.size == 0 or not np.isfinite(scores).all() or (scores < 0).any():
        raise InvalidFeatureError(
            f"impostor_distances must be a non-empty array of finite distances >= 0 (got "
            f"{scores.size} values{', some NaN, infinite or negative' if scores.size else ''}): "
            "pass the nearest distance of each non-mated search",
            code="scores",
        )
    ordered = np.sort(scores)
    n = len(ordered)
    allowed = math.floor(rate * n + 1e-9)  # impostors that may be accepted
    # Accepting d < ordered[allowed] admits at most `allowed` impostors (ties go out too).
    threshold = math.inf if allowed >= n else float(ordered[allowed])
    achieved = float(np.count_nonzero(ordered < threshold)) / n
    return Calibration(
        threshold=threshold,
        target=rate,
        achieved=achieved,
        scores=n,
        resolution=1.0 / n,
        reliable=rate * n >= 10,
    )


@attrs.frozen
class OperatingPoint:
    """One 1:1 operating point measured on labelled people: the threshold for a target
    false-accept rate, the rate actually reached on the sample, and the true-accept rate."""

    far_target: float
    threshold: float
    far: float
    tar: float
    reliable: bool


@attrs.frozen(eq=False)
class PeopleCalibration:
    """Genuine and impostor pair distances of a labelled set, and its operating points."""

    people: int
    images: int
    genuine: np.ndarray
    impostor: np.ndarray
    points: tuple[OperatingPoint, ...]

    def __repr__(self) -> str:
        return (
            f"<PeopleCalibration {self.people} people, {self.images} images, "
            f"{len(self.genuine)} genuine / {len(self.impostor)} impostor pairs>"
        )


def calibrate_on_people(
    vectors: Any,
    labels: Any,
    fars: tuple[float, ...] = (1e-3, 1e-4),
    *,
    max_impostor_pairs: int = 2_000_000,
    seed: int = 0,
) -> PeopleCalibration:
    """Thresholds for target false-accept rates, measured on a deployment's own people.

    Every same-person pair is a genuine pair; every different-person pair (a seeded sample
    past *max_impostor_pairs*) is an impostor pair. A threshold is reliable when at least
    ten impostor pairs fall under the target rate (``FAR * pairs >= 10``).
    """
    x = np.asarray(vectors, np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise InvalidFeatureError(
            f"vectors must be (n, dim) with one label each (got {x.shape} and {len(y)} labels)",
            code="shape",
        )
    names, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes)
    if len(names) < 2 or counts.max() < 2:
        raise InvalidFeatureError(
            f"calibration needs at least two people and someone with two or more photos (got "
            f"{len(names)} people, at most {int(counts.max()) if len(counts) else 0} photo(s) "
            "each): add photos, one folder per person",
            code="too_few",
        )
    iu = np.triu_indices(len(x), 1)
    same = codes[iu[0]] == codes[iu[1]]
    gi, gj = iu[0][same], iu[1][same]
    ii, ij = iu[0][~same], iu[1][~same]
    if len(ii) > max_impostor_pairs:
        pick = np.random.default_rng(seed).choice(len(ii), max_impostor_pairs, replace=False)
        ii, ij = ii[pick], ij[pick]

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(np.sqrt(np.maximum(((x[a] - x[b]) ** 2).sum(1), 0.0)), np.float64)

    genuine, impostor = dist(gi, gj), dist(ii, ij)
    points = []
    for far in fars:
        cal = calibrate_threshold(impostor, far)
        points.append(OperatingPoint(
            far_target=cal.target, threshold=cal.threshold, far=cal.achieved,
            tar=float(np.mean(genuine < cal.threshold)), reliable=cal.reliable,
        ))
    return PeopleCalibration(len(names), len(x), genuine, impostor, tuple(points))
