"""``faceid-sdk keys``: create, list and revoke the scoped API keys of a store.

A key's secret is shown once, at creation, on stdout or into a new owner-only file; the
store keeps its SHA-256 only. Servers on the store honour a new or revoked key from their
next request.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ._cli_settings import CONTEXT_SETTINGS, FaceIDCommandError, StoreType
from .errors import FaceIDError, StoreError
from .keys import PRESETS, SCOPES

__all__ = ["keys_group"]

_store_option = click.option(
    "--store", type=StoreType(),
    default=lambda: os.environ.get("FACEID_STORE", "faceid.db"),
    show_default="$FACEID_STORE or faceid.db", help="SQLite store of enrolled identities.")
_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _open(store: Path | str):  # type: ignore[no-untyped-def]
    from ._enroll import Enroller
    from ._stores import store_exists

    if not store_exists(store):
        raise StoreError(f"no store at {str(store)!r}: enroll someone or start `serve` first, "
                         "or pass --store / set FACEID_STORE")
    return Enroller.open(store)


@click.group("keys", context_settings=CONTEXT_SETTINGS)
def keys_group() -> None:
    """Scoped API keys: a key per device or service, permissions per operation."""


@keys_group.command("create", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True,
              help=f"Scope(s): {', '.join(SCOPES)}, or a preset: "
                   + "; ".join(f"{k} = {', '.join(v)}" for k, v in PRESETS.items())
                   + ". Repeatable, or comma-separated.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the key to this new file (mode 0600) instead of printing it.")
@_store_option
@_json_option
def create(name: str, scopes: tuple[str, ...], out: Path | None, store: Path | str,
           as_json: bool) -> None:
    """Create key NAME; its secret is shown only now."""
    if out is not None and out.exists():
        raise click.UsageError(f"{str(out)!r} exists: a key file is never overwritten")
    try:
        with _open(store) as enroller:
            record, text = enroller.create_api_key(name, scopes)
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc
    if out is not None:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
    info = {**record.to_dict(), **({"file": str(out)} if out else {"key": text})}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"key {record.name!r} ({', '.join(record.scopes)}) created", err=True)
    if out is None:
        click.echo(text)
        click.echo("store it now: it is not shown again", err=True)
    else:
        click.echo(f"written to {out}", err=True)


@keys_group.command("list", context_settings=CONTEXT_SETTINGS)
@_store_option
@_json_option
def list_keys(store: Path | str, as_json: bool) -> None:
    """List keys (names, scopes, dates; never secrets)."""
    try:
        with _open(store) as enroller:
            records = enroller.api_keys()
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    if not records:
        click.echo("no API keys: the API is open (loopback only unless `serve --demo`)")
    for r in records:
        state = "active" if r.active else f"revoked {r.revoked_at:%Y-%m-%d %H:%M}Z"
        click.echo(f"{r.name}\t{','.join(r.scopes)}\t{state}\tcreated "
                   f"{r.created_at:%Y-%m-%d %H:%M}Z")


@keys_group.command("revoke", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@_store_option
@_json_option
def revoke(name: str, store: Path | str, as_json: bool) -> None:
    """Revoke key NAME at once, for every server on this store."""
    try:
        with _open(store) as enroller:
            record = enroller.revoke_api_key(name)
    except FaceIDError as exc:
        raise FaceIDCommandError(exc) from exc
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
    else:
        click.echo(f"key {record.name!r} revoked")
