"""``faceid-sdk``: a thin command line over the library.

Each command parses arguments, calls one public function and prints the result (a
table for people, ``--json`` for scripts). Library errors become a one-line message
and the exit status carried by the error class:

    0   success (for identify/verify: every query was accepted)
    1   ran fine, but a query was not recognised / not verified
    2   usage error (click)
    64  bad identity name or key   65  bad vector, payload or photo
    66  unknown identity           69  optional backend not installed
    74  the store or its index could not be read or written, is damaged, or lost writes
    78  template-protection key missing or wrong
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

from . import __version__
from ._cli_settings import (
    CONTEXT_SETTINGS,
    STORE_HELP,
    FaceIDCommandError,
    StoreType,
    ambiguity_option,
    threshold_option,
)
from ._stores import read_store_meta, store_exists
from .errors import FaceIDError, InvalidFeatureError, StoreError
from .identity import unsafe_character

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STORE = "faceid.db"


@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    try:
        yield
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc


def _emit(payload: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    else:
        human()


store_option = click.option(
    "--store",
    type=StoreType(),
    default=lambda: os.environ.get("FACEID_STORE", DEFAULT_STORE),
    show_default="$FACEID_STORE or faceid.db",
    help=STORE_HELP,
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def vectors_options(func: F) -> F:
    """Where query or enrollment vectors come from: a file, payloads, or photos."""
    func = click.option(
        "--aligned", is_flag=True,
        help="The photos are 112x112 crops already on the template: skip detection.",
    )(func)
    func = click.option(
        "--image", "images", multiple=True, type=click.Path(exists=True),
        help="Face photo or folder of photos (repeatable; photos may also follow as "
             "arguments). Needs faceid-sdk[onnx] or [tensorflow].",
    )(func)
    func = click.option(
        "--payload", "payloads", multiple=True,
        help="Encoded feature vector (base64url text form of the wire format).",
    )(func)
    func = click.option(
        "--vectors", "vectors_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=".npy (one vector or n x dim) or .npz with an 'embeddings' array (from `embed`).",
    )(func)
    return func


photos_argument = click.argument("photos", nargs=-1, type=click.Path(exists=True))


def embed_photo_paths(paths: tuple[str, ...], *, aligned: bool, model_id: str) -> Any:
    """Photos to vectors for a store of *model_id* (the road every photo command takes)."""
    from ._cli_photos import read_photos
    from .extractors import default_extractor

    extractor = default_extractor()
    if extractor.model_id != model_id:
        raise InvalidFeatureError(
            f"the store holds templates of model {model_id!r} but the installed extractor is "
            f"{extractor.model_id!r}: use a store made with this model",
            code="model_id",
        )
    return read_photos(paths, extractor, aligned=aligned)


def _read_vectors(
    vectors_file: Path | None, payloads: tuple[str, ...], images: tuple[str, ...],
    *, model_id: str, dim: int, aligned: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Return (matrix, labels): one row per query, labelled by where it came from."""
    from ._codec import FeatureCodec

    _check_one_source(vectors_file, payloads, images)
    if payloads:
        codec = FeatureCodec(model_id, dim)
        rows = [codec.decode_text(p) for p in payloads]
        return np.stack(rows), [f"payload {i}" for i in range(len(rows))]
    if images:
        result = embed_photo_paths(images, aligned=aligned, model_id=model_id)
        return result.vectors, list(result.paths)
    if vectors_file is None:  # unreachable: one source is given; keeps the type checker honest
        raise click.UsageError("give --vectors")
    if vectors_file.suffix == ".npz":
        with np.load(vectors_file, allow_pickle=False) as data:
            if "embeddings" not in data:
                raise click.UsageError(f"{vectors_file} has no 'embeddings' array")
            matrix = np.asarray(data["embeddings"], dtype=np.float32)
            labels = [str(p) for p in data["paths"]] if "paths" in data else []
            file_model = str(data["model_id"]) if "model_id" in data else None
        if file_model is not None and file_model != model_id:
            raise InvalidFeatureError(
                f"{vectors_file} holds vectors of model {file_model!r}, the store is for "
                f"{model_id!r}: embed the photos again with the store's model",
                code="model_mismatch",
            )
    else:
        matrix = np.asarray(np.load(vectors_file, allow_pickle=False), dtype=np.float32)
        labels = []
    if matrix.ndim == 1:
        matrix = matrix[np.newaxis, :]
    if not labels:
        labels = [f"{vectors_file.name}[{i}]" for i in range(len(matrix))]
    return matrix, labels


def _check_one_source(vectors_file: Path | None, payloads: tuple[str, ...],
                      images: tuple[str, ...]) -> None:
    sources = sum(bool(s) for s in (vectors_file, payloads, images))
    if sources != 1:
        raise click.UsageError("give exactly one of --vectors, --payload or photos (--image)")


def _open_enroller(store: Path | str, *, create: bool, model_id: str | None = None,
                   dim: int | None = None, threshold: float | str | None = None,
                   allow_ambiguous: bool = False) -> Any:
    from ._enroll import open_or_create

    if not create and not store_exists(store):
        raise StoreError(
            f"no store at {str(store)!r}: enroll someone first, or pass --store / set FACEID_STORE"
        )
    return open_or_create(store, model_id=model_id, dim=dim, threshold=threshold,
                          reject_ambiguous=not allow_ambiguous)


def _shown(text: str) -> str:
    """*text* safe for a terminal: anything unsafe (escapes, bidi, invisible) as ``\\x..``."""
    if unsafe_character(text) is None:
        return text
    return "".join(ch if unsafe_character(ch) is None else ch.encode("unicode_escape").decode()
                   for ch in text)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="faceid-sdk")
def main() -> None:
    """Privacy-preserving face identification: enroll and match feature vectors.

    Devices extract features; only vectors reach the server. Every command works
    on a local SQLite store (--store, default $FACEID_STORE or ./faceid.db).
    """


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("identity")
@photos_argument
@vectors_options
@store_option
@click.option("--display-name", help="Human-readable name kept with the identity.")
@click.option("--external-id", help="Your system's id for this person.")
@click.option("--replace", is_flag=True, help="Replace existing templates instead of adding.")
@click.option("--model-id", help="Model id for a NEW store (default: the shipped model).")
@click.option("--dim", type=click.IntRange(min=1), help="Dimension for a NEW store.")
@json_option
def enroll(identity: str, photos: tuple[str, ...], vectors_file: Path | None,
           payloads: tuple[str, ...], images: tuple[str, ...], aligned: bool, store: Path | str,
           display_name: str | None, external_id: str | None, replace: bool,
           model_id: str | None, dim: int | None, as_json: bool) -> None:
    """Enroll IDENTITY from PHOTOS (files or folders) or feature vectors.

    Durable before this returns. Photos that cannot be used (no face, several faces, too
    small, not an image) are listed on stderr and the others are enrolled; nothing is
    written when none can be used.
    """
    import warnings

    from .vectors import as_matrix, check_unit_norm

    images = images + photos
    with _errors_to_exit_codes():
        _check_one_source(vectors_file, payloads, images)
        if store_exists(store):
            meta = read_store_meta(store)
            model_id, dim = meta["model_id"], int(meta["dim"])
        else:
            if vectors_file and (model_id is None or dim is None):
                # A new store takes its dimension from the vectors unless told otherwise.
                probe = np.load(vectors_file, allow_pickle=False)
                array = probe["embeddings"] if vectors_file.suffix == ".npz" else probe
                dim = dim or int(np.asarray(array).shape[-1])
            if model_id is None or dim is None:
                from ._defaults import default_model_info

                info = default_model_info()
                model_id, dim = model_id or info.model_id, dim or info.dim
        # Everything is read and checked before the store is opened (or created).
        matrix, _ = _read_vectors(vectors_file, payloads, images, model_id=model_id, dim=dim,
                                  aligned=aligned)
        check_unit_norm(as_matrix(matrix, dim))
        with _open_enroller(store, create=True, model_id=model_id, dim=dim) as enroller, \
                warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            call = enroller.replace if replace else enroller.enroll
            result = call(identity, matrix, display_name=display_name, external_id=external_id)
    payload = {
        "identity": result.identity, "created": result.created,
        "templates_added": len(result.template_ids), "templates_replaced": result.replaced,
        "conflicts": list(result.conflicts),
    }

    def human() -> None:
        verb = "created" if result.created else ("replaced" if replace else "updated")
        click.echo(f"{result.identity}: {verb}, {len(result.template_ids)} template(s) stored")
        for other in result.conflicts:
            click.secho(f"warning: a new template already matches {other!r}", fg="yellow", err=True)

    _emit(payload, as_json, human)


def _match_command(verify_identity: str | None, vectors_file: Path | None,
                   payloads: tuple[str, ...], images: tuple[str, ...], aligned: bool,
                   store: Path | str, threshold: float | str | None, allow_ambiguous: bool,
                   as_json: bool, top: int) -> None:
    with _errors_to_exit_codes(), \
            _open_enroller(store, create=False, threshold=threshold,
                           allow_ambiguous=allow_ambiguous) as enroller:
        matrix, labels = _read_vectors(vectors_file, payloads, images, aligned=aligned,
                                       model_id=enroller.model_id, dim=enroller.dim)
        # Match through the Enroller, not its matcher: it protects queries with the
        # store's template key when there is one.
        if verify_identity is not None:
            results = [enroller.verify(row, verify_identity) for row in matrix]
        else:
            results = []
            # Progress only where a person watches a long batch.
            show_bar = len(matrix) > 1000 and not as_json and sys.stderr.isatty()
            with click.progressbar(length=len(matrix), label="identifying", file=sys.stderr,
                                   hidden=not show_bar) as bar:
                for start in range(0, len(matrix), 1000):
                    chunk = matrix[start:start + 1000]
                    results.extend(enroller.identify_batch(chunk))
                    bar.update(len(chunk))
        candidates = [enroller.candidates(row, k=top) for row in matrix] if top else None
    rows = []
    for i, (label, result) in enumerate(zip(labels, results, strict=False)):
        row: dict[str, Any] = {
            "query": label, "identity": result.identity if result.accepted else None,
            "nearest": result.identity, "accepted": result.accepted, "reason": result.reason,
            "distance": None if result.distance == float("inf") else round(result.distance, 6),
        }
        if candidates is not None:
            row["candidates"] = [
                {"identity": c.identity, "distance": round(c.distance, 6)} for c in candidates[i]
            ]
        rows.append(row)

    def human() -> None:
        for row in rows:
            why = " (ambiguous: another identity is as close)" if row["reason"] == "ambiguous" \
                else ""
            verdict = row["identity"] if row["accepted"] else f"not recognised{why}"
            if verify_identity is not None:
                verdict = f"verified as {verify_identity}" if row["accepted"] else \
                    f"not {verify_identity}{why}"
            dist = "-" if row["distance"] is None else f"{row['distance']:.4f}"
            click.echo(f"{row['query']}\t{verdict}\tdistance={dist}")
            for cand in row.get("candidates", []):
                click.echo(f"    {cand['identity']}\t{cand['distance']:.4f}")

    _emit(rows, as_json, human)
    if not all(r.accepted for r in results):
        sys.exit(1)


@main.command(context_settings=CONTEXT_SETTINGS)
@photos_argument
@vectors_options
@store_option
@threshold_option
@ambiguity_option
@click.option("--top", type=click.IntRange(min=0), default=0,
              help="Also list the K nearest identities (for human review).")
@json_option
def identify(photos: tuple[str, ...], vectors_file: Path | None, payloads: tuple[str, ...],
             images: tuple[str, ...], aligned: bool, store: Path | str,
             threshold: float | str | None, allow_ambiguous: bool, top: int, as_json: bool) -> None:
    """1:N: who is in PHOTOS (files or folders), or who are these vectors?

    Exit 0 if every query is recognised, 1 otherwise, 65 when no photo can be used.
    """
    _match_command(None, vectors_file, payloads, images + photos, aligned, store, threshold,
                   allow_ambiguous, as_json, top)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("identity")
@photos_argument
@vectors_options
@store_option
@threshold_option
@ambiguity_option
@json_option
def verify(identity: str, photos: tuple[str, ...], vectors_file: Path | None,
           payloads: tuple[str, ...], images: tuple[str, ...], aligned: bool, store: Path | str,
           threshold: float | str | None, allow_ambiguous: bool, as_json: bool) -> None:
    """1:1: is this IDENTITY? Exit 0 if verified, 1 if not, 65 when no photo can be used."""
    _match_command(identity, vectors_file, payloads, images + photos, aligned, store, threshold,
                   allow_ambiguous, as_json, 0)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("identity")
@store_option
@json_option
def remove(identity: str, store: Path | str, as_json: bool) -> None:
    """Remove IDENTITY and all its templates."""
    with _errors_to_exit_codes(), _open_enroller(store, create=False) as enroller:
        count = enroller.remove(identity)
    _emit({"identity": identity, "templates_removed": count}, as_json,
          lambda: click.echo(f"{identity}: removed ({count} template(s))"))


@main.command("list", context_settings=CONTEXT_SETTINGS)
@store_option
@json_option
def list_(store: Path | str, as_json: bool) -> None:
    """List enrolled identities (names and metadata, never vectors)."""
    with _errors_to_exit_codes(), _open_enroller(store, create=False) as enroller:
        records = enroller.identities()

    def human() -> None:
        if not records:
            click.echo("no identities enrolled")
        for r in records:
            extra = f"  ({_shown(r.display_name)})" if r.display_name else ""
            click.echo(f"{_shown(r.identity)}{extra}\t{r.template_count} template(s)\t"
                       f"enrolled {r.created_at:%Y-%m-%d %H:%M}Z")

    _emit([r.to_dict() for r in records], as_json, human)


@main.command(context_settings=CONTEXT_SETTINGS)
@store_option
@json_option
def info(store: Path | str, as_json: bool) -> None:
    """Describe the store, its index file and the installed backends."""
    from ._enroll import Enroller
    from .extractors import available_backends

    with _errors_to_exit_codes():
        data: dict[str, Any] = {"version": __version__, "store": str(store),
                                "backends": available_backends()}
        if store_exists(store):
            with Enroller.open(store) as enroller:
                data.update(
                    model_id=enroller.model_id, dim=enroller.dim,
                    identities=len(enroller), templates=len(enroller.matcher),
                    threshold=enroller.threshold.value,
                    threshold_source=enroller.threshold.source,
                    index_file=str(enroller.index_path), index_status=enroller.index_status,
                )
        else:
            data["store_status"] = "missing (created by the first enroll)"

    def human() -> None:
        for key, value in data.items():
            if isinstance(value, dict):
                click.echo(f"{key}:")
                for name, status in value.items():
                    click.echo(f"  {name:12} {status}")
            else:
                click.echo(f"{key:16} {value}")

    _emit(data, as_json, human)


@main.command("rebuild-index", context_settings=CONTEXT_SETTINGS)
@store_option
@threshold_option
@click.option("--milvus-uri", help="Rebuild this Milvus gallery (server URI or milvus-lite file) "
              "from the store instead of the index file.")
@json_option
def rebuild_index_command(store: Path | str, threshold: float | str | None,
                          milvus_uri: str | None, as_json: bool) -> None:
    """Rebuild the index file (or a Milvus gallery) from the store and report what was checked."""
    from ._enroll import rebuild_index

    with _errors_to_exit_codes():
        if not store_exists(store):
            raise StoreError(f"no store at {str(store)!r}: nothing to rebuild from")
        report = rebuild_index(store, threshold=threshold, milvus_uri=milvus_uri)

    def human() -> None:
        click.echo(f"previous index: {report.previous} ({report.reason})")
        for item in report.checked:
            click.echo(f"checked: {item}")
        click.echo(f"wrote {report.index_path}: {report.identities} identities, "
                   f"{report.templates} templates, store sequence {report.sequence}")

    import attrs

    _emit(attrs.asdict(report), as_json, human)


# Commands that live in their own modules; those modules import heavy packages only
# inside the command functions, so registering them here costs nothing.
from ._cli_adapters import export_command, parity_command  # noqa: E402
from ._cli_keys import keys_group  # noqa: E402
from ._cli_model import evaluate_command, model_info_command, train_command  # noqa: E402
from ._cli_photos import calibrate_command, embed_command, payload_command  # noqa: E402
from ._cli_server import serve  # noqa: E402
from ._cli_trust import rotate_key_command  # noqa: E402

for _command in (serve, train_command, embed_command, payload_command, calibrate_command,
                 evaluate_command, model_info_command, export_command, parity_command,
                 rotate_key_command, keys_group):
    main.add_command(_command)
