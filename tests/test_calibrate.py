"""Open-set risk: 1 - (1 - FMR)^N, its inverse, and FPIR threshold calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faceid_sdk import (
    InvalidFeatureError,
    Matcher,
    calibrate_threshold,
    fmr_for_fpir,
    impostor_match_probability,
)
from faceid_sdk.testing import unit_vectors


def test_the_issue_figure():
    """FMR 1e-4 over 10,000 people: an impostor matches someone 63% of the time."""
    assert impostor_match_probability(1e-4, 10_000) == pytest.approx(0.6321, abs=1e-4)
    assert impostor_match_probability(1e-4, 1) == pytest.approx(1e-4)
    assert impostor_match_probability(0.3, 0) == 0.0
    assert impostor_match_probability(1.0, 5) == 1.0
    # Tiny rates keep their precision (the naive formula returns 0 here).
    assert impostor_match_probability(1e-18, 1000) == pytest.approx(1e-15, rel=1e-6)


@given(st.floats(1e-12, 0.999), st.integers(1, 10**7))
def test_fmr_for_fpir_inverts(fpir, n):
    """impostor_match_probability(fmr_for_fpir(p, N), N) == p."""
    assert impostor_match_probability(fmr_for_fpir(fpir, n), n) == pytest.approx(fpir, rel=1e-6)


@pytest.mark.parametrize(("call", "code"), [
    (lambda: impostor_match_probability(1.5, 10), "rate"),
    (lambda: impostor_match_probability("0.1", 10), "rate"),
    (lambda: fmr_for_fpir(0.1, -1), "gallery_size"),
    (lambda: calibrate_threshold([], 0.1), "scores"),
    (lambda: calibrate_threshold([0.3, float("nan")], 0.1), "scores"),
    (lambda: calibrate_threshold([0.3, -1.0], 0.1), "scores"),
    (lambda: calibrate_threshold([[object()]], 0.1), "scores"),
])
def test_bad_arguments_are_refused(call, code):
    """Out-of-range rates, negative sizes and unusable scores raise with a code."""
    with pytest.raises(InvalidFeatureError) as info:
        call()
    assert info.value.code == code


@given(st.lists(st.floats(0, 2), min_size=1, max_size=300), st.floats(0, 1))
def test_calibration_never_exceeds_its_target(scores, target):
    """At most target·n scores are strictly under the threshold, and it is the largest such."""
    cal = calibrate_threshold(scores, target)
    below = sum(s < cal.threshold for s in scores)
    assert below <= math.floor(target * len(scores) + 1e-9)
    assert cal.achieved == below / len(scores) <= target + 1e-12
    if math.isfinite(cal.threshold):  # a larger threshold would admit one more score
        assert sum(s <= cal.threshold for s in scores) > math.floor(target * len(scores) + 1e-9)


def test_calibrated_threshold_bounds_fpir_on_a_gallery():
    """Nearest distances of non-mated searches give a threshold whose FPIR is the target."""
    dim = 16
    gallery = Matcher(dim)
    enrolled = unit_vectors(500, dim, seed=1)
    for i, row in enumerate(enrolled):
        gallery.add(f"p{i}", row)
    strangers = unit_vectors(2000, dim, seed=2)
    nearest = np.array([r.distance for r in gallery.identify_batch(strangers)])
    cal = calibrate_threshold(nearest, 0.01)
    assert cal.reliable and cal.scores == 2000 and cal.achieved <= 0.01
    strict = Matcher(dim, threshold=cal.threshold)
    for i, row in enumerate(enrolled):
        strict.add(f"p{i}", row)
    fpir = np.mean([r.accepted for r in strict.identify_batch(strangers)])
    assert fpir == cal.achieved
    # A sample too small for the target says so.
    assert not calibrate_threshold(nearest[:50], 0.01).reliable


def test_evaluation_tooling_reports_the_calibrated_threshold():
    """faceid_sdk.training's open-set report uses the same calibration."""
    from faceid_sdk.training._evaluate import _open_set

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(60), 4)
    emb = unit_vectors(240, 16, seed=rng)
    report = _open_set(emb, labels, 0.5)["calibrated_fpir_1e-2"]
    assert report["fpir"] <= 0.01 and report["target_fpir"] == 0.01
    assert report["nonmated_probes"] == 120 and report["reliable"] is False


def test_calibrate_on_people_counts_pairs_and_bounds_far():
    """Every same-person pair is genuine, every other pair an impostor; the threshold keeps the
    measured FAR at or under the target, and TAR is measured at that very threshold."""
    from faceid_sdk._calibrate import calibrate_on_people

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 16))
    labels = np.repeat(np.arange(20), 4)
    x = centres[labels] + 0.25 * rng.standard_normal((80, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cal = calibrate_on_people(x, labels.astype(str), (1e-2, 1e-3))
    assert (cal.people, cal.images) == (20, 80)
    assert len(cal.genuine) == 20 * 6 and len(cal.impostor) == 80 * 79 // 2 - 120
    for point in cal.points:
        assert point.far <= point.far_target
        assert point.tar == pytest.approx(np.mean(cal.genuine < point.threshold))
        assert point.far == pytest.approx(np.mean(cal.impostor < point.threshold))
    assert cal.points[0].reliable and not cal.points[1].reliable  # 3040 * 1e-3 < 10
    with pytest.raises(ValueError, match="at least two people"):
        calibrate_on_people(x[:4], ["a"] * 4)
