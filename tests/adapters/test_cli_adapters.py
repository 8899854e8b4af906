"""`export` and `parity` commands: help text, and a divergence exits 1 with a report."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from faceid_sdk._cli_adapters import export_command, parity_command


@click.group()
def cli() -> None:
    pass


cli.add_command(export_command)
cli.add_command(parity_command)


@pytest.mark.parametrize("name", ["export", "parity"])
def test_help(name: str) -> None:
    """Each command has help and imports no framework to print it."""
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_export_rejects_uint8_keras(tmp_path: Path) -> None:
    """An unsupported combination is a usage error (exit 2) saying what to do."""
    result = CliRunner().invoke(cli, ["export", "--format", "keras", "--quantize", "uint8",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "use --format onnx or tfjs for uint8" in result.output


def test_parity_divergence_exits_1_with_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend outside tolerance: the table is printed, it says DIVERGES, exit status 1."""
    import faceid_adapters
    from faceid_adapters.parity import BackendParity, ParityReport, Tolerance

    bad = BackendParity("onnx", "float32", 0.3, 0.91, 5, 6, Tolerance(1e-4, 0.99999))
    monkeypatch.setattr(faceid_adapters, "run_parity",
                        lambda **kw: ParityReport("ffem-am-128-abc", 10, (bad,)), raising=False)
    result = CliRunner().invoke(cli, ["parity", "--backend", "onnx"])
    assert result.exit_code == 1
    assert "DIVERGES (allowed max |diff| 0.0001, min cosine 0.99999" in result.output
    assert result.output.rstrip().endswith("BACKENDS DIVERGE")


@pytest.mark.tensorflow
@pytest.mark.slow
def test_parity_command_on_exports(model_dir: Path, onnx_file: Path, tmp_path: Path) -> None:
    """Same weights: exit 0 'all backends agree'; an export of other weights: exit 65."""
    import onnx

    ok = CliRunner().invoke(cli, ["parity", "--weights", str(model_dir), "--backend", "onnx",
                                  "--onnx", str(onnx_file)])
    assert ok.exit_code == 0, ok.output
    assert "all backends agree" in ok.output
    foreign = onnx.load(onnx_file)
    for entry in foreign.metadata_props:
        if entry.key == "model_id":
            entry.value = "ffem-am-128-000000000000"
    onnx.save(foreign, tmp_path / "foreign.onnx")
    bad = CliRunner().invoke(cli, ["parity", "--weights", str(model_dir), "--backend", "onnx",
                                   "--onnx", str(tmp_path / "foreign.onnx")])
    assert bad.exit_code == 65, bad.output
    assert "re-export it from the weights you mean to serve" in bad.output
