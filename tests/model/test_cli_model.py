"""The model commands: help works without TensorFlow, embed writes what it promises."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from faceid_sdk._cli_model import evaluate_command, model_info_command, train_command
from faceid_sdk._cli_photos import embed_command

FIXTURES = Path(__file__).parents[1] / "fixtures" / "faces"
SHIPPED = Path(__file__).parents[2] / "faceid_sdk" / "models" / "ffem_am"


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
def test_embed_with_weights_takes_the_same_road(tmp_path: Path) -> None:
    """--weights (TensorFlow) and the default backend (ONNX) align and refuse the same photos
    and give the same vectors; images without a face are listed, never dropped silently."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    args = [str(FIXTURES / "raw"), str(blank)]
    tf_out, onnx_out = tmp_path / "tf.npz", tmp_path / "onnx.npz"
    result = CliRunner().invoke(
        embed_command, [*args, "--out", str(tf_out), "--weights", str(SHIPPED)]
    )
    assert result.exit_code == 0, result.output
    assert "no face found" in result.output
    result = CliRunner().invoke(embed_command, [*args, "--out", str(onnx_out)])
    assert result.exit_code == 0, result.output
    with np.load(tf_out) as a, np.load(onnx_out) as b:
        assert a["embeddings"].shape == (2, 128) and a["embeddings"].dtype == np.float32
        assert list(a["paths"]) == list(b["paths"])
        assert [s.split("\t")[1] for s in a["skipped"]] == ["no_face"]
        assert str(a["model_id"]) == str(b["model_id"])
        np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=1e-4)


@pytest.mark.slow
@pytest.mark.tensorflow
def test_model_info_table_matches_the_built_models() -> None:
    """model-info answers the default sizes from stats.json: rebuilding every model gives
    exactly the stored numbers (scripts/gen_model_stats.py rewrites the file)."""
    import importlib.util
    import json

    from faceid_sdk._cli_model import STATS_FILE

    path = Path(__file__).parents[2] / "scripts" / "gen_model_stats.py"
    spec = importlib.util.spec_from_file_location("gen_model_stats", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(STATS_FILE.read_text()) == module.compute()
