"""``faceid-sdk rotate-key``: protect, re-key or un-protect a store's templates in place.

Lives in its own module (registered by :mod:`faceid_sdk.cli`); it imports the library only
inside the command, so registering it costs nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ._cli_settings import CONTEXT_SETTINGS, FaceIDCommandError, StoreType
from .errors import FaceIDError

__all__ = ["rotate_key_command"]


@click.command("rotate-key", context_settings=CONTEXT_SETTINGS)
@click.option("--store", type=StoreType(),
              default=lambda: os.environ.get("FACEID_STORE", "faceid.db"),
              show_default="$FACEID_STORE or faceid.db",
              help="SQLite store of enrolled identities.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Current key (default: $FACEID_TEMPLATE_KEY_FILE or $FACEID_TEMPLATE_KEY; "
                   "none for a store that is not protected yet).")
@click.option("--new-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Existing key file to re-key the templates to.")
@click.option("--generate-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a fresh 256-bit key here (mode 0600, must not exist) and re-key to it.")
@click.option("--unprotect", is_flag=True,
              help="Store the templates unprotected again (for a migration; not recommended).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def rotate_key_command(store: Path | str, key_file: Path | None, new_key_file: Path | None,
                       generate_key_file: Path | None, unprotect: bool, as_json: bool) -> None:
    """Re-key every stored template in one transaction; nobody enrolls again.

    Templates are kept rotated by a secret key (docs/security.md). After a suspected leak,
    or on a schedule, rotate to a new key, then destroy the old one: stolen copies of the
    database stop matching anything this deployment sees. Keep key files outside the
    store's directory and its backups.
    """
    if sum((new_key_file is not None, generate_key_file is not None, unprotect)) != 1:
        raise click.UsageError("give exactly one of --new-key-file, --generate-key-file or "
                               "--unprotect")
    if generate_key_file is not None and generate_key_file.exists():
        raise click.UsageError(f"{str(generate_key_file)!r} exists: a key file is never "
                               "overwritten; choose a new path")
    from ._enroll import Enroller
    from ._protect import TemplateProtector, protector_from_environment
    from ._stores import read_store_meta

    try:
        meta = read_store_meta(store)
        dim = int(meta["dim"])
        old = protector_from_environment(dim, key_file=key_file)
        if old is not None and not meta.get("protection_key_id"):
            old = None  # an unprotected store has no current key; ignore a stray variable
        if generate_key_file is not None:
            new = TemplateProtector.new_key_file(generate_key_file, dim)
        elif new_key_file is not None:
            new = TemplateProtector.from_key_file(new_key_file, dim)
        else:
            new = None
        with Enroller.open(store, protector=old) as enroller:
            before = enroller.protector
            count = enroller.rotate_key(new)
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc
    report = {
        "store": str(store),
        "templates": count,
        "old_key_id": None if before is None else before.key_id,
        "new_key_id": None if new is None else new.key_id,
        "new_key_file": str(generate_key_file or new_key_file or "") or None,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{count} templates re-keyed: {report['old_key_id'] or 'unprotected'} -> "
               f"{report['new_key_id'] or 'unprotected'}")
    if new is not None:
        click.echo(f"from now on open the store with --key-file {report['new_key_file']} "
                   "(or $FACEID_TEMPLATE_KEY_FILE); destroy the old key once every server "
                   "uses the new one")
