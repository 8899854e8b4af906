"""docs/security.md: its Python examples run, and its figures match the code."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from faceid_sdk import impostor_match_probability
from faceid_sdk.testing import unit_vectors

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def test_examples_run(tmp_path):
    """Every python block runs, with the names the page leaves to the reader."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace = {"key_path": tmp_path / "k1.key", "new_key_path": tmp_path / "k2.key",
                 "store_path": tmp_path / "faces.db", "vector": unit_vectors(1, 128, seed=0)[0]}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)


def test_open_set_table_matches_the_formula():
    """The open-set table is 1 - (1 - FMR)^N, rounded as printed."""
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([\d,]+) \| ([\d.]+) % \| ([\d.]+) % \| ([\d.]+) % \|$", text, re.M)
    assert len(rows) == 4
    for n, *cells in rows:
        for fmr, cell in zip((1e-3, 1e-4, 1e-6), cells, strict=True):
            assert f"{100 * impostor_match_probability(fmr, int(n.replace(',', ''))):.1f}" == \
                (cell if "." in cell else f"{float(cell):.1f}")


def test_linked_from_server_doc_and_readme():
    """docs/server.md and the README link here."""
    root = DOC.parent.parent
    assert "(security.md)" in (root / "docs" / "server.md").read_text(encoding="utf-8")
    assert "docs/security.md" in (root / "README.md").read_text(encoding="utf-8")
    assert np.isfinite(impostor_match_probability(1e-4, 10_000))
