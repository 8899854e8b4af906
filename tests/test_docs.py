"""Every Python block in the docs runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
ROOT = DOCS.parent
EXECUTED = ["docs/quickstart.md", "README.md"]


@pytest.mark.parametrize("name", EXECUTED)
def test_doc_examples_run(name, tmp_path, monkeypatch):
    """The page's python blocks run in order in one namespace without error, from a folder
    that sees the repository's files where the README's examples expect them."""
    if name == "README.md":
        pytest.importorskip("openvino")
        pytest.importorskip("onnxruntime")
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall((ROOT / name).read_text(encoding="utf-8"))
    assert blocks, f"{name} has no python examples"
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks:
        exec(compile(block, f"{name}", "exec"), namespace)


def test_cli_reference_is_current():
    """docs/cli.md is exactly what scripts/gen_cli_docs.py renders from --help."""
    import importlib.util

    path = DOCS.parent / "scripts" / "gen_cli_docs.py"
    spec = importlib.util.spec_from_file_location("gen_cli_docs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == module.render(), (
        "docs/cli.md is stale: run python scripts/gen_cli_docs.py"
    )
