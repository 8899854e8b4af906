"""docs/server.md stays true: its Python runs, its tables name every route and error code."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from faceid_sdk.server import ENDPOINTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "server.md"
SERVER = Path(__file__).resolve().parents[2] / "faceid_sdk" / "server"


def test_server_doc_examples_run(tmp_path, monkeypatch):
    """The page's python blocks run in order without error."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for block in re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.DOTALL):
            exec(compile(block, "server.md", "exec"), namespace)


def test_server_doc_lists_every_route_and_error_code():
    """Every endpoint and every error code the server can send appears in docs/server.md."""
    text = DOC.read_text("utf-8")
    for endpoint in ENDPOINTS:
        shown = endpoint.full_path.replace("{identity}", "{id}")
        assert f"{endpoint.method} {shown}" in text, endpoint
    source = "\n".join(p.read_text("utf-8") for p in SERVER.glob("*.py"))
    codes = set(re.findall(r'HTTPError\(\s*\d{3},\s*"(\w+)"', source))
    codes |= set(re.findall(r'ChallengeError\(\s*"(\w+)"', source))
    codes |= {"not_found", "method_not_allowed", "model_mismatch", "invalid_feature",
              "invalid_identity", "unknown_identity", "store_unavailable"}
    missing = sorted(c for c in codes if f"`{c}`" not in text)
    assert not missing, f"document these error codes in docs/server.md: {missing}"
