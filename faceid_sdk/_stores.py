"""Where a store lives: an SQLite file (a path) or PostgreSQL (a ``postgresql://`` URL).

One place decides, for the Enroller, the CLI and the server alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ._store import ContentState, IdentityRecord, SQLiteStore, StoredTemplates, WriteResult
from ._store_pg import PostgresStore, is_postgres_url, redact_url
from .keys import ApiKey
from .vectors import FloatMatrix

__all__ = ["Store", "StoreLocation", "describe", "is_postgres_url", "open_store",
           "read_store_meta", "store_exists"]

#: A store's location as the CLI and the library take it.
StoreLocation = str | os.PathLike[str]


class Store(Protocol):
    """The store of record: what the Enroller needs, kept by SQLite and PostgreSQL alike.

    Every mutation is one durable transaction that also moves ``sequence`` by one and the
    content digest by exactly the templates written; ``tests/test_store_conformance.py``
    runs one suite against every implementation.
    """

    model_id: str
    dim: int
    last_write_sequence: int
    expected_key_id: str | object | None

    @property
    def path(self) -> Path | str:
        """The SQLite file, or the PostgreSQL URL without its password."""

    @property
    def calibrated_threshold(self) -> float | None: ...
    def save_calibrated_threshold(self, value: float, note: str) -> None: ...
    @property
    def sequence(self) -> int: ...
    def content_state(self) -> ContentState: ...
    def __len__(self) -> int: ...
    def __contains__(self, identity: object) -> bool: ...
    def template_id_snapshot(self) -> tuple[int, np.ndarray]: ...
    def templates_with_ids(self, ids: Sequence[int]) -> StoredTemplates: ...
    def templates(self) -> StoredTemplates: ...
    def identities(self) -> list[IdentityRecord]: ...
    def get(self, identity: str) -> IdentityRecord: ...
    @property
    def store_id(self) -> str: ...
    @property
    def protection_key_id(self) -> str | None: ...
    def integrity_check(self, *, quick: bool = False) -> str: ...
    def add(self, identity: str, vectors: FloatMatrix, *, display_name: str | None = None,
            external_id: str | None = None, replace: bool = False) -> WriteResult: ...
    def remove(self, identity: str) -> np.ndarray: ...
    def rekey(self, transform: npt.NDArray[np.float64], *, old_key_id: str | None,
              new_key_id: str | None) -> int: ...
    def add_api_key(self, name: str, scopes: tuple[str, ...]) -> tuple[ApiKey, str]: ...
    def api_keys(self) -> list[ApiKey]: ...
    def has_active_api_keys(self) -> bool: ...
    def revoke_api_key(self, name: str) -> ApiKey: ...
    def authenticate(self, key_id: str, secret: str) -> ApiKey | None: ...
    def close(self) -> None: ...


def open_store(location: StoreLocation, *, model_id: str, dim: int) -> Store:
    """The store at *location*, created empty for *model_id*/*dim* when new."""
    if is_postgres_url(location):
        return PostgresStore(str(location), model_id=model_id, dim=dim)
    return SQLiteStore(location, model_id=model_id, dim=dim)


def read_store_meta(location: StoreLocation) -> dict[str, str]:
    """The model id, dimension, sequence... of an existing store; StoreError if none."""
    if is_postgres_url(location):
        return PostgresStore.read_meta(str(location))
    return SQLiteStore.read_meta(location)


def store_exists(location: StoreLocation) -> bool:
    """Whether a store is at *location* (for a URL: whether its database holds one)."""
    if is_postgres_url(location):
        from .errors import StoreError

        try:
            PostgresStore.read_meta(str(location))
        except StoreError:
            return False
        return True
    return Path(location).exists()


def describe(location: StoreLocation) -> str:
    """*location* for messages: a path, or a URL without its password."""
    return redact_url(str(location)) if is_postgres_url(location) else str(location)
