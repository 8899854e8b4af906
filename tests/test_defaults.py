"""The shipped model's identity card is readable without any framework."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from faceid_sdk._defaults import default_model_info


def test_default_model_info_matches_shipped_model_json():
    """default_model_info reads model id and dimension from the shipped model.json."""
    try:
        text = resources.files("faceid_sdk.models.ffem_am").joinpath("model.json").read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        pytest.skip("no shipped model in this checkout")
    data = json.loads(text)
    info = default_model_info()
    assert info.model_id == data["model_id"]
    assert re.fullmatch(r"ffem-am-\d+-[0-9a-f]{12}", info.model_id)
    assert info.dim == 128 and info.input_size == 96


def test_threshold_rule_in_order(tmp_path):
    """Given > the store's own calibration > the shipped model's calibration > the paper's 0.5."""
    from faceid_sdk import PAPER_THRESHOLD, Enroller, resolve_threshold
    from faceid_sdk._defaults import calibrated_threshold

    info = default_model_info()
    shipped = calibrated_threshold(info.model_id)
    assert resolve_threshold(0.42, model_id=info.model_id, stored=0.3).value == 0.42
    assert resolve_threshold("paper", model_id=info.model_id).value == PAPER_THRESHOLD
    assert resolve_threshold(None, model_id=info.model_id, stored=0.3).value == 0.3
    expected = shipped.value if shipped else PAPER_THRESHOLD
    assert resolve_threshold(None, model_id=info.model_id).value == expected
    other = resolve_threshold(None, model_id="someone-elses-model")
    assert other.value == PAPER_THRESHOLD and "no calibration" in other.source
    with pytest.raises(ValueError, match="'paper'"):
        resolve_threshold("strict", model_id=None)
    # The store's saved threshold is what the next Enroller (CLI, serve) decides with.
    with Enroller(tmp_path / "s.db", "demo", 4) as enroller:
        assert enroller.threshold.value == PAPER_THRESHOLD
        enroller.save_calibrated_threshold(0.37, "test")
    with Enroller(tmp_path / "s.db", "demo", 4) as enroller:
        assert enroller.threshold.value == 0.37 and enroller.matcher.threshold == 0.37
        assert "this store" in enroller.threshold.source
    with Enroller(tmp_path / "s.db", "demo", 4, threshold=0.2) as enroller:
        assert enroller.matcher.threshold == 0.2


def test_shipped_model_carries_its_calibration():
    """model.json names calibrated thresholds for FAR 1e-3 and 1e-4 and which one is the
    default; the Matcher's default is that one."""
    from faceid_sdk.matching import DEFAULT_THRESHOLD

    calibration = default_model_info().metadata["calibration"]
    assert set(calibration["thresholds"]) >= {"far_1e-3", "far_1e-4"}
    key = calibration["default"]
    assert pytest.approx(calibration["thresholds"][key]) == DEFAULT_THRESHOLD
    assert calibration["thresholds"]["far_1e-4"] < calibration["thresholds"]["far_1e-3"]
