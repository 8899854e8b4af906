"""The "write your own" example of docs/backends.md runs as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "backends.md"


def test_write_your_own_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The python blocks register a toy backend and get it back from the registry."""
    import faceid_sdk.extractors as extractors

    monkeypatch.setattr(extractors, "_REGISTRY", dict(extractors._REGISTRY))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.DOTALL)
    assert blocks
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)
    finally:
        sys.modules.pop("toy_backend", None)
    assert "mean-colour" in extractors._REGISTRY
