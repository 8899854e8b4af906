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
