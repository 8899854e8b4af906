"""Photo commands: ``embed``, ``payload``, ``calibrate``.

All three read photos through :func:`faceid_sdk.photos.embed_photos`, the road ``enroll`` and
``identify`` take too: same extractor, same alignment, same refusals (each skipped file is
listed on stderr with its reason; exit 65 when nothing is usable). Heavy packages are imported
inside the commands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ._cli_settings import CONTEXT_SETTINGS, FaceIDCommandError, StoreType, quiet_tensorflow
from .errors import FaceIDError, InvalidImageError

__all__ = ["calibrate_command", "embed_command", "payload_command", "read_photos"]


def _extractor(weights: str | None, backend: str | None) -> Any:
    from .extractors import default_extractor, get_extractor

    if weights is not None or backend == "tensorflow":
        quiet_tensorflow()
    if weights is not None:
        return get_extractor("tensorflow", weights=weights)
    return get_extractor(backend) if backend else default_extractor()


def read_photos(paths: tuple[str, ...], extractor: Any, *, aligned: bool,
                several: str = "refuse") -> Any:
    """Vectors of the usable photos under *paths*; every skipped file is reported on stderr,
    and :class:`InvalidImageError` (exit 65) is raised when none is usable."""
    from .photos import embed_photos

    result = embed_photos(paths, extractor, aligned=aligned, several=several)
    if len(result) or len(result.skipped) > 1:  # a lone refused file is the error itself
        for item in result.skipped:
            click.secho(f"skipped {item}", fg="yellow", err=True)
    return result.require_some()


aligned_option = click.option(
    "--aligned", is_flag=True,
    help="The images are 112x112 crops already on the template: skip detection.",
)
backend_option = click.option(
    "--backend", type=click.Choice(["onnx", "tensorflow"]), default=None,
    help="Extractor backend [default: the lightest installed].",
)
weights_option = click.option(
    "--weights", default=None,
    help="Weights to embed with (a folder with model.json, or a float16 .npz) instead of the "
    "shipped model; implies the tensorflow backend.",
)
photos_argument = click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))


@click.command("embed", context_settings=CONTEXT_SETTINGS)
@photos_argument
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output .npz: embeddings, paths, skipped, model_id.")
@aligned_option
@click.option("--main-face", is_flag=True,
              help="Photos show one known person: take the centred face when there are several "
              "(default: skip such photos).")
@backend_option
@weights_option
def embed_command(paths: tuple[str, ...], out: Path, aligned: bool, main_face: bool,
                  backend: str | None, weights: str | None) -> None:
    """Write one feature vector per usable photo under PATHS (files or folders) to OUT.

    The same road as enroll and identify. Skipped photos are listed on stderr and stored
    in OUT as 'skipped' (path and reason); OUT records the model id, so enroll --vectors
    refuses vectors of another model. Exit 65 when no photo can be used.
    """
    import numpy as np

    try:
        extractor = _extractor(weights, backend)
        result = read_photos(paths, extractor, aligned=aligned,
                         several="main" if main_face else "refuse")
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out, embeddings=result.vectors, paths=np.array(result.paths, dtype=str),
        skipped=np.array([f"{s.path}\t{s.code}" for s in result.skipped], dtype=str),
        model_id=np.array(result.model_id),
    )
    click.echo(f"{len(result)} embeddings ({result.vectors.shape[1]}-d, {result.model_id}) -> "
               f"{out}; {len(result.skipped)} skipped")


@click.command("payload", context_settings=CONTEXT_SETTINGS)
@photos_argument
@aligned_option
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True,
              help="Element type on the wire (float16 halves the payload).")
@backend_option
@click.option("--json", "as_json", is_flag=True,
              help="Ready-made identify request bodies ({\"features\": ...}), one per line.")
def payload_command(paths: tuple[str, ...], aligned: bool, dtype: str, backend: str | None,
                    as_json: bool) -> None:
    """Print the encoded feature vector of each photo (base64url), as a device sends it.

    One line per usable photo, for curl and for testing a server by hand:

    \b
    faceid-sdk payload --json me.jpg |
      curl -H 'Content-Type: application/json' -d @- http://127.0.0.1:8000/api/v1/identify
    """
    from ._codec import FeatureCodec

    try:
        extractor = _extractor(None, backend)
        result = read_photos(paths, extractor, aligned=aligned, several="refuse")
        codec = FeatureCodec(extractor.model_id, extractor.dim)
        for vector in result.vectors:
            text = codec.encode_text(vector, dtype="float16" if dtype == "float16" else "float32")
            click.echo(json.dumps({"features": text}) if as_json else text)
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc


def _labelled_photos(root: Path) -> tuple[list[str], list[Path]]:
    from .photos import IMAGE_SUFFIXES

    people = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    labels, files = [], []
    for person in people:
        for f in sorted(person.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                labels.append(person.name)
                files.append(f)
    return labels, files


def _plot(calibration: Any, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    thresholds = np.unique(np.concatenate([calibration.genuine, calibration.impostor]))
    far = np.searchsorted(np.sort(calibration.impostor), thresholds, "left") / len(
        calibration.impostor)
    tar = np.searchsorted(np.sort(calibration.genuine), thresholds, "left") / len(
        calibration.genuine)
    floor = 0.5 / len(calibration.impostor)
    fig, (roc, det) = plt.subplots(1, 2, figsize=(10, 4.2))
    roc.semilogx(np.maximum(far, floor), tar)
    roc.set(xlabel="false accept rate", ylabel="true accept rate", title="ROC", ylim=(0, 1.01))
    det.loglog(np.maximum(far, floor), np.maximum(1 - tar, 0.5 / len(calibration.genuine)))
    det.set(xlabel="false accept rate", ylabel="false reject rate", title="DET")
    for p in calibration.points:
        roc.axvline(p.far_target, color="grey", lw=0.8, ls="--")
        roc.annotate(f"FAR {p.far_target:g}\nt={p.threshold:.3f}", (p.far_target, p.tar),
                     fontsize=8)
        det.axvline(p.far_target, color="grey", lw=0.8, ls="--")
    for ax in (roc, det):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command("calibrate", context_settings=CONTEXT_SETTINGS)
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--far", "fars", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              multiple=True, default=(1e-3, 1e-4), show_default=True,
              help="Target false-accept rate(s) (repeatable); the first is the one --save keeps.")
@aligned_option
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("calibration.png"), show_default=True, help="ROC and DET curves (PNG).")
@click.option("--save", is_flag=True,
              help="Store the first --far's threshold in --store: identify, verify and serve "
              "then use it by default.")
@click.option("--store", type=StoreType(),
              default=lambda: os.environ.get("FACEID_STORE", "faceid.db"),
              show_default="$FACEID_STORE or faceid.db", help="Store that --save writes to.")
@backend_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def calibrate_command(root: Path, fars: tuple[float, ...], aligned: bool, plot: Path, save: bool,
                      store: Path | str, backend: str | None, as_json: bool) -> None:
    """Thresholds for your own people: ROOT holds one folder of photos per person.

    Every same-person pair is a genuine pair and every different-person pair an impostor
    pair; for each target false-accept rate this prints the threshold and the true-accept
    rate measured at it, and draws ROC/DET curves. With --save the first threshold is kept
    in the store. Thresholds below 10 impostor pairs per target rate are marked unreliable:
    add people to measure lower rates.
    """
    from ._calibrate import calibrate_on_people

    try:
        labels, files = _labelled_photos(root)
        if not files:
            raise InvalidImageError(
                f"no photos under {root}: it must hold one folder of photos per person",
                code="no_face",
            )
        extractor = _extractor(None, backend)
        result = read_photos(tuple(str(f) for f in files), extractor, aligned=aligned,
                         several="main")
        by_path = dict(zip((str(f) for f in files), labels, strict=True))
        kept_labels = [by_path[p] for p in result.paths]
        calibration = calibrate_on_people(result.vectors, kept_labels, tuple(fars))
        if save:
            _save_threshold(store, extractor, calibration, root)
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc
    _plot(calibration, plot, f"{root.name}: {calibration.people} people, "
          f"{calibration.images} photos, model {extractor.model_id}")
    rows = [
        {"far_target": p.far_target, "threshold": round(p.threshold, 6), "far": p.far,
         "tar": round(p.tar, 6), "reliable": p.reliable} for p in calibration.points
    ]
    summary = {
        "people": calibration.people, "photos": calibration.images,
        "skipped": len(result.skipped), "genuine_pairs": len(calibration.genuine),
        "impostor_pairs": len(calibration.impostor), "model_id": extractor.model_id,
        "points": rows, "plot": str(plot), "saved_to": str(store) if save else None,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{calibration.people} people, {calibration.images} photos "
               f"({len(result.skipped)} skipped), {len(calibration.genuine)} genuine and "
               f"{len(calibration.impostor)} impostor pairs, model {extractor.model_id}")
    click.echo(f"{'target FAR':>10}  {'threshold':>9}  {'measured FAR':>12}  {'TAR':>6}")
    for p in calibration.points:
        note = "" if p.reliable else "  (unreliable: too few impostor pairs)"
        click.echo(f"{p.far_target:>10g}  {p.threshold:>9.4f}  {p.far:>12.2e}  {p.tar:>6.3f}{note}")
    click.echo(f"curves: {plot}")
    if save:
        click.echo(f"saved threshold {calibration.points[0].threshold:.4f} "
                   f"(FAR {calibration.points[0].far_target:g}) in {store}")


def _save_threshold(store: Path | str, extractor: Any, calibration: Any, root: Path) -> None:
    import math

    from ._enroll import open_or_create

    point = calibration.points[0]
    if not math.isfinite(point.threshold):
        raise InvalidImageError(
            f"no finite threshold for FAR {point.far_target:g} on this data: add more people",
            code="too_few",
        )
    with open_or_create(store, model_id=extractor.model_id, dim=extractor.dim) as enroller:
        if enroller.model_id != extractor.model_id:
            from .errors import ModelMismatchError

            raise ModelMismatchError(
                f"{store} is for model {enroller.model_id!r}, the photos were embedded with "
                f"{extractor.model_id!r}: calibrate with the store's model",
                code="model_id",
            )
        enroller.save_calibrated_threshold(
            point.threshold,
            f"FAR {point.far_target:g} on {calibration.people} people / {calibration.images} "
            f"photos of {root}",
        )
