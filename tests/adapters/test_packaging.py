"""pyproject lists every package (the adapters' mapped folder rules out `packages.find`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is 3.11+")
def test_every_package_is_listed_in_pyproject() -> None:
    """Each folder with an __init__.py under faceid_sdk/ and adapters/ is in the wheel."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for top, name in (("faceid_sdk", "faceid_sdk"), ("adapters", "faceid_adapters")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            if "node_modules" not in rel:
                found.add(".".join((name, *rel)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert config["package-dir"]["faceid_adapters"] == "adapters"
