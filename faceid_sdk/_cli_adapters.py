"""Adapter commands: ``export`` and ``parity`` (thin layers over :mod:`faceid_adapters`).

TensorFlow, ONNX and the adapters themselves are imported inside the commands, so
``faceid-sdk --help`` stays fast and works without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._cli_settings import CONTEXT_SETTINGS, FaceIDCommandError, quiet_tensorflow

__all__ = ["export_command", "parity_command"]

weights_option = click.option(
    "--weights", type=click.Path(exists=True, path_type=Path), default=None,
    help="Keras weights: a model folder (model.json + weights.npz), a float16 .npz, a .keras or "
    ".weights.h5 file [default: the shipped model].",
)


def _adapters() -> Any:
    from faceid_sdk.errors import BackendUnavailableError

    try:
        import faceid_adapters
    except ImportError:
        raise BackendUnavailableError(
            "the adapters (faceid_adapters) are not installed: pip install 'faceid-sdk[export]' "
            "from a source checkout"
        ) from None
    return faceid_adapters


def _run(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Library errors become a one-line message and the exit code of their class."""
    from faceid_sdk.errors import FaceIDError

    try:
        return func(*args, **kwargs)
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc
    except (ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from exc


@click.command("export", context_settings=CONTEXT_SETTINGS)
@click.option("--format", "fmt", type=click.Choice(["keras", "onnx", "tfjs"]), required=True,
              help="Target runtime: Keras, ONNX Runtime (server) or TF.js graph model (browser).")
@click.option("--quantize", type=click.Choice(["float16", "uint8", "mixed"]), default=None,
              help="Store weights in fewer bits (computation stays float32); mixed, TF.js "
              "only: uint8 with float16 where rounding hurts [default: float32].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("export"),
              show_default=True, help="Folder to write into (created).")
@weights_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def export_command(fmt: str, quantize: str | None, out: Path, weights: Path | None,
                   as_json: bool) -> None:
    """Export the feature extractor for another runtime.

    Writes ffem_am.keras, ffem_am[.Q].onnx or the folder ffem_am[.Q].tfjs/ under --out.
    The TF.js export needs the converter environment: `make tfjs-setup`.
    """
    quiet_tensorflow()
    adapters = _adapters()
    result = _run(adapters.export_model, fmt, out, quantize, weights)
    if as_json:
        click.echo(json.dumps({
            "format": result.format, "quantize": result.quantize, "path": str(result.path),
            "size_bytes": result.size_bytes, "model_id": result.model_id,
        }, indent=2))
    else:
        click.echo(f"{result.path}  {result.size_bytes / 1e6:.2f} MB  {result.model_id}")


@click.command("parity", context_settings=CONTEXT_SETTINGS)
@weights_option
@click.option("--golden", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Golden parity.json [default: tests/golden/parity.json].")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["onnx", "tfjs"]),
              help="Backend(s) to compare with TensorFlow [default: onnx and tfjs].")
@click.option("--quantize", type=click.Choice(["float16", "uint8"]), default=None,
              help="Compare quantized exports (the golden file's tolerances for that precision).")
@click.option("--onnx", "onnx_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Check this ONNX file instead of a fresh export.")
@click.option("--tfjs", "tfjs_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Check this TF.js graph-model folder instead of a fresh export.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep fresh exports here [default: a temporary folder].")
@click.option("--repeats", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also time each backend at batch 1 and 32 (median of this many runs).")
@click.option("--write-reference", is_flag=True,
              help="Only store TensorFlow's vectors of the golden faces beside the golden file "
              "(reference-<model_id>.npy), for checks that run without TensorFlow.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def parity_command(weights: Path | None, golden: Path | None, backends: tuple[str, ...],
                   quantize: str | None, onnx_path: Path | None, tfjs_dir: Path | None,
                   workdir: Path | None, repeats: int, write_reference: bool,
                   as_json: bool) -> None:
    """Check that TensorFlow, ONNX Runtime and TF.js (Node, wasm) give the same features.

    Runs the golden faces through each backend and reports the largest absolute
    difference, the smallest cosine similarity and whether every identify decision is
    the same. Exits 1 when a backend is outside the golden file's tolerances. Without
    --weights, the shipped weights are checked against the shipped ONNX file when there is one.
    """
    quiet_tensorflow()
    adapters = _adapters()
    if write_reference:
        from faceid_adapters.parity import write_reference as write

        click.echo(_run(write, weights=weights, golden=golden))
        return
    report = _run(
        adapters.run_parity, weights=weights, golden=golden,
        backends=backends or ("onnx", "tfjs"), quantize=quantize, onnx_path=onnx_path,
        tfjs_dir=tfjs_dir, workdir=workdir, repeats=repeats,
    )
    click.echo(json.dumps(report.to_dict(), indent=2, default=str) if as_json
               else report.to_text())
    if not report.ok:
        raise SystemExit(1)
