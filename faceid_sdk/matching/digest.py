"""A digest of gallery content that the store keeps up to date and any index can recompute.

The digest of a gallery is the sum, modulo 2**256, of the SHA-256 of every template's
``(template id, identity, float32 vector bytes)``: a multiset hash, so the store can add
and subtract templates in the same transaction that writes them, and an index can
recompute it from what it actually holds. An index whose content is not the store's (ids
swapped between people, a restored copy, a vector changed) gets another digest, whatever
its manifest claims.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np

__all__ = ["EMPTY_DIGEST", "add_digests", "format_digest", "parse_digest", "template_digest"]

_MODULUS: Final = 1 << 256
_ID: Final = struct.Struct("<q")

#: The digest of an empty gallery.
EMPTY_DIGEST: Final = "0" * 64


def template_digest(ids: Iterable[int], identities: Sequence[str], vectors: Any) -> int:
    """The (unformatted) digest of templates given as ids, owners and float32 rows."""
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    total = 0
    for template_id, name, row in zip(ids, identities, rows, strict=True):
        digest = hashlib.sha256(_ID.pack(int(template_id)))
        encoded = name.encode("utf-8")
        digest.update(_ID.pack(len(encoded)))
        digest.update(encoded)
        digest.update(row.tobytes())
        total += int.from_bytes(digest.digest(), "little")
    return total % _MODULUS


def add_digests(current: str, added: int = 0, removed: int = 0) -> str:
    """*current* with templates of digest *added* added and *removed* taken away."""
    return format_digest(parse_digest(current) + added - removed)


def format_digest(value: int) -> str:
    """A digest as 64 hexadecimal digits."""
    return f"{value % _MODULUS:064x}"


def parse_digest(text: str) -> int:
    """The integer of a digest written by :func:`format_digest`."""
    return int(text, 16)
