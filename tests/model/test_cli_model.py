"""The model commands: help works without TensorFlow, embed writes what it promises."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from faceid_sdk._cli_model import (
    embed_command,
    evaluate_command,
    model_info_command,
    train_command,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "faces"


@pytest.mark.parametrize(
    "command", [train_command, embed_command, evaluate_command, model_info_command]
)
def test_help(command) -> None:  # type: ignore[no-untyped-def]
    """Every model command documents itself."""
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_module_import_is_light() -> None:
    """Importing the command module does not import TensorFlow or dlib."""
    assert "faceid_sdk._cli_model" in sys.modules
    import subprocess

    code = (
        "import sys, faceid_sdk._cli_model; "
        "print('tensorflow' in sys.modules or 'dlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.tensorflow
def test_model_info_reports_paper_size() -> None:
    """model-info prints 2.23 M parameters and 8.9 MB float32 for FFEM-AM 128-d."""
    result = CliRunner().invoke(model_info_command, [])
    assert result.exit_code == 0, result.output
    assert "2.23 M" in result.output and "8.9 MB float32" in result.output


@pytest.mark.slow
@pytest.mark.tensorflow
def test_embed_photos_and_crops(tmp_path: Path) -> None:
    """embed aligns photos, takes crops with --aligned, and reports images without a face."""
    from PIL import Image

    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    out = tmp_path / "photos.npz"
    result = CliRunner().invoke(
        embed_command, [str(FIXTURES / "raw"), str(blank), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with np.load(out) as z:
        assert z["embeddings"].shape == (2, 128) and z["embeddings"].dtype == np.float32
        assert len(z["paths"]) == 2
        assert list(z["no_face"]) == [str(blank)]
    out2 = tmp_path / "crops.npz"
    result = CliRunner().invoke(
        embed_command, [str(FIXTURES / "aligned"), "--aligned", "--out", str(out2)]
    )
    assert result.exit_code == 0, result.output
    with np.load(out2) as z:
        assert z["embeddings"].shape == (6, 128)
