"""The index file: a cache of one gallery, verified completely before FAISS parses it.

One file: a fixed preamble, a JSON manifest protected by its SHA-256, and the bytes of
``faiss.serialize_index`` protected by theirs. The manifest holds only what the file
caches and where it came from: the dimension, the template ids of each identity, the
caller's metadata (for the Enroller: the store's id, sequence, model and key) and the
digest of the content (:mod:`faceid_sdk.matching.digest`). Decision settings (threshold,
ambiguity rule) are not index data: they belong to whoever opens the file.

:func:`read_index_file` checks the magic, the version, both checksums, the dimension, the
template count, the caller's expected metadata and the exact layout of the FAISS bytes
*before* FAISS parses them: its deserializer trusts its input, and a crafted file could
corrupt memory. It opens the path without blocking and refuses anything but a regular
file (a FIFO at the index path would otherwise hang every command).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from collections.abc import Mapping
from typing import Any, Final

import attrs
import faiss
import numpy as np

from .._atomic import atomic_write_bytes
from ..errors import IndexFileError, InvalidFeatureError
from ..identity import normalize_identity
from ..vectors import NORM_TOLERANCE
from .kernels import IdArray

__all__ = [
    "INDEX_FORMAT_VERSION",
    "REBUILD_HINT",
    "IndexManifest",
    "check_metadata",
    "read_index_file",
    "read_manifest",
    "write_index_file",
]

#: Version of the index file layout (2: no decision settings, a content digest).
INDEX_FORMAT_VERSION: Final = 2

#: What to do about a bad index file, appended to every complaint.
REBUILD_HINT: Final = "run `faceid-sdk rebuild-index` to rebuild it from the store"

_MAGIC: Final = b"FIDXMTCH"
# magic, format version, manifest length, SHA-256 of the manifest
_PREAMBLE: Final = struct.Struct("<8sII32s")
_MAX_MANIFEST: Final = 1 << 30

# Layout of faiss.serialize_index(IndexIDMap2(IndexFlatL2(d))) in FAISS >= 1.7: per
# index a fourcc and a header (d:i32, ntotal:i64, two reserved i64, is_trained:u8,
# metric:i32), then the flat codes (count of floats:i64, floats), then the id map
# (count:i64, int64 ids).
_FAISS_HEADER: Final = struct.Struct("<iqqqBi")
_METRIC_L2: Final = 1


@attrs.frozen(repr=False)
class IndexManifest:
    """What an index file says about itself, readable without loading the FAISS index."""

    format_version: int
    dim: int
    count: int
    next_id: int
    faiss_version: str
    faiss_size: int
    faiss_sha256: str
    content_digest: str
    metadata: Mapping[str, str | int]
    identities: Mapping[str, tuple[int, ...]]

    def __repr__(self) -> str:
        meta = " ".join(f"{k}={v!r}" for k, v in sorted(self.metadata.items()))
        return (
            f"<IndexManifest v{self.format_version} dim={self.dim} templates={self.count} "
            f"identities={len(self.identities)}{' ' + meta if meta else ''}>"
        )


def write_index_file(
    path: str | os.PathLike[str],
    index: Any,
    *,
    dim: int,
    next_id: int,
    identities: Mapping[str, list[int]],
    content_digest: str,
    metadata: Mapping[str, str | int] | None = None,
) -> None:
    """Write *index* (an ``IndexIDMap2`` over ``IndexFlatL2``) and its manifest atomically."""
    meta = check_metadata(metadata)
    payload = faiss.serialize_index(index)
    manifest = {
        "format": INDEX_FORMAT_VERSION,
        "dim": dim,
        "count": int(index.ntotal),
        "next_id": next_id,
        "faiss_version": str(faiss.__version__),
        "faiss_size": int(payload.nbytes),
        "faiss_sha256": hashlib.sha256(payload.data).hexdigest(),
        "content_digest": content_digest,
        "metadata": meta,
        "identities": {name: list(ids) for name, ids in identities.items()},
    }
    header = json.dumps(manifest, ensure_ascii=False, separators=(",", ":")).encode()
    preamble = _PREAMBLE.pack(
        _MAGIC, INDEX_FORMAT_VERSION, len(header), hashlib.sha256(header).digest()
    )
    atomic_write_bytes(path, [preamble, header, payload.data])


def _read_regular(where: str, limit: int | None = None) -> tuple[bytes, int]:
    """The bytes of a regular file (at most *limit*) and its size; never blocks on a FIFO."""
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        reason = "missing" if isinstance(exc, FileNotFoundError) else "corrupt"
        raise IndexFileError(
            f"cannot read index file {where!r} ({exc.strerror or exc}): {REBUILD_HINT}",
            reason=reason,
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IndexFileError(
                f"index file {where!r} is not a regular file (a FIFO, device or directory "
                f"is there): remove it, then {REBUILD_HINT}",
                reason="corrupt",
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read() if limit is None else handle.read(limit)
    except OSError as exc:
        raise IndexFileError(
            f"cannot read index file {where!r} ({exc.strerror or exc}): {REBUILD_HINT}"
        ) from exc
    finally:
        os.close(fd)
    return data, info.st_size


def read_index_file(
    path: str | os.PathLike[str],
    *,
    expect: Mapping[str, str | int] | None = None,
    dim: int | None = None,
) -> tuple[IndexManifest, Any]:
    """The manifest and the FAISS index of a file written by :func:`write_index_file`.

    *expect* lists metadata that must be present with exactly these values; *dim* the
    required dimension. Raises :class:`IndexFileError` (with its ``reason``) on any
    mismatch or corruption.
    """
    where = os.fspath(path)
    data, _ = _read_regular(where)
    manifest, offset = _parse_manifest(data, where)
    _check_expectations(manifest, where, expect=expect, dim=dim)
    payload = memoryview(data)[offset:]
    if len(payload) != manifest.faiss_size:
        raise IndexFileError(
            f"index file {where!r} is truncated or padded: FAISS section is {len(payload)} "
            f"bytes, manifest says {manifest.faiss_size}; {REBUILD_HINT}"
        )
    if hashlib.sha256(payload).hexdigest() != manifest.faiss_sha256:
        raise IndexFileError(
            f"index file {where!r} is corrupt: SHA-256 of the FAISS section does not match "
            f"its manifest; {REBUILD_HINT}"
        )
    expected_ids = np.sort(
        np.fromiter(
            (i for ids in manifest.identities.values() for i in ids),
            dtype=np.int64,
            count=manifest.count,
        )
    )
    _check_faiss_layout(payload, manifest.dim, expected_ids, where)
    try:
        # deserialize_index already returns the concrete, owning type: wrapping it
        # again with downcast_index would leave a non-owning view of freed memory.
        index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
    except RuntimeError as exc:
        raise IndexFileError(f"FAISS refused index file {where!r} ({exc}); {REBUILD_HINT}") from exc
    if (
        not isinstance(index, faiss.IndexIDMap2)
        or index.d != manifest.dim
        or index.ntotal != manifest.count
    ):
        raise IndexFileError(
            f"index file {where!r} holds {type(index).__name__} d={index.d} with "
            f"{index.ntotal} templates, not the IndexIDMap2 d={manifest.dim} with "
            f"{manifest.count} its manifest describes; {REBUILD_HINT}"
        )
    return manifest, index


def read_manifest(path: str | os.PathLike[str]) -> IndexManifest:
    """The manifest of an index file, checksum-verified, without reading the FAISS section.

    Also checks that the file size matches what the manifest announces, so a truncated
    file is caught here too.
    """
    where = os.fspath(path)
    head, size = _read_regular(where, limit=_PREAMBLE.size)
    if len(head) == _PREAMBLE.size and head[:8] == _MAGIC:
        length = _PREAMBLE.unpack(head)[2]
        head, size = _read_regular(where, limit=_PREAMBLE.size + min(length, _MAX_MANIFEST + 1))
    manifest, offset = _parse_manifest(head, where)
    if size != offset + manifest.faiss_size:
        raise IndexFileError(
            f"index file {where!r} is {size} bytes, its manifest announces "
            f"{offset + manifest.faiss_size}: truncated or padded; {REBUILD_HINT}"
        )
    return manifest


def check_metadata(metadata: Mapping[str, str | int] | None) -> dict[str, str | int]:
    result: dict[str, str | int] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not key:
            raise InvalidFeatureError(
                f"metadata keys must be non-empty str (got {key!r})", code="metadata"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidFeatureError(
                f"metadata[{key!r}] must be <str> or <int> (got {value!r} that is a "
                f"<{type(value).__name__}>)",
                code="metadata",
            )
        result[key] = value
    return result


def _corrupt(where: str, what: str) -> IndexFileError:
    return IndexFileError(f"index file {where!r} is corrupt or foreign: {what}; {REBUILD_HINT}")


def _parse_manifest(data: bytes, where: str) -> tuple[IndexManifest, int]:
    """Check preamble and manifest of *data*; return the manifest and where FAISS bytes start."""
    if data[: len(_MAGIC)] != _MAGIC:
        raise _corrupt(where, f"magic is {bytes(data[: len(_MAGIC)])!r}, expected {_MAGIC!r}")
    if len(data) < _PREAMBLE.size:
        raise _corrupt(where, f"{len(data)} bytes is shorter than the {_PREAMBLE.size}-byte header")
    _, version, length, digest = _PREAMBLE.unpack_from(data)
    if version != INDEX_FORMAT_VERSION:
        raise IndexFileError(
            f"index file {where!r} has format version {version}, this faceid-sdk reads "
            f"version {INDEX_FORMAT_VERSION}; {REBUILD_HINT}",
            reason="format",
        )
    end = _PREAMBLE.size + length
    if length > _MAX_MANIFEST or len(data) < end:
        raise _corrupt(where, f"manifest of {length} bytes runs past the end of the file")
    raw = data[_PREAMBLE.size : end]
    if hashlib.sha256(raw).digest() != digest:
        raise _corrupt(where, "SHA-256 of the manifest does not match")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(where, f"manifest is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _corrupt(where, "manifest is not a JSON object")
    return _manifest_from_doc(doc, where), end


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise _corrupt(where, f"manifest field {key!r} is {value!r}, not a {kind}")
    return value


def _manifest_from_doc(doc: dict[str, Any], where: str) -> IndexManifest:
    dim = _field(doc, "dim", int, where)
    count = _field(doc, "count", int, where)
    next_id = _field(doc, "next_id", int, where)
    size = _field(doc, "faiss_size", int, where)
    sha = _field(doc, "faiss_sha256", str, where)
    metadata = _field(doc, "metadata", dict, where)
    identities = _field(doc, "identities", dict, where)
    if dim <= 0 or count < 0 or size < 0 or next_id < 0 or len(sha) != 64:
        raise _corrupt(where, "manifest has out-of-range fields")
    digest = _field(doc, "content_digest", str, where)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise _corrupt(where, "manifest content digest is not 64 hexadecimal digits")
    try:
        check_metadata(metadata)
    except InvalidFeatureError as exc:
        raise _corrupt(where, f"manifest {exc}") from None
    mapping: dict[str, tuple[int, ...]] = {}
    seen: set[int] = set()
    for name, ids in identities.items():
        try:
            normalized = normalize_identity(name)
        except ValueError:
            normalized = None
        if normalized != name:
            raise _corrupt(where, f"manifest identity {name!r} is not a valid normalized name")
        if (
            not isinstance(ids, list)
            or not ids
            or not all(type(i) is int and 0 <= i < next_id for i in ids)
        ):
            raise _corrupt(where, f"manifest ids of {name!r} are not ids below next_id")
        if seen.intersection(ids) or len(set(ids)) != len(ids):
            raise _corrupt(where, f"manifest gives a template id twice (at {name!r})")
        seen.update(ids)
        mapping[name] = tuple(ids)
    if len(seen) != count:
        raise _corrupt(where, f"manifest maps {len(seen)} template ids but announces {count}")
    return IndexManifest(
        format_version=INDEX_FORMAT_VERSION,
        dim=dim,
        count=count,
        next_id=next_id,
        faiss_version=str(doc.get("faiss_version", "")),
        faiss_size=size,
        faiss_sha256=sha,
        content_digest=digest,
        metadata=dict(metadata),
        identities=mapping,
    )


def _check_expectations(
    manifest: IndexManifest,
    where: str,
    *,
    expect: Mapping[str, str | int] | None,
    dim: int | None,
) -> None:
    if dim is not None and manifest.dim != dim:
        raise IndexFileError(
            f"index file {where!r} has dim {manifest.dim}, expected {dim}: it was built for "
            f"another model; {REBUILD_HINT}",
            reason="foreign",
        )
    for key, wanted in (expect or {}).items():
        if key not in manifest.metadata:
            raise IndexFileError(
                f"index file {where!r} has no metadata {key!r} (expected {wanted!r}); "
                f"{REBUILD_HINT}",
                reason="foreign",
            )
        got = manifest.metadata[key]
        if type(got) is not type(wanted) or got != wanted:
            reason = "foreign"
            if key == "sequence" and isinstance(got, int) and isinstance(wanted, int):
                reason = "stale" if got < wanted else "ahead"
            raise IndexFileError(
                f"index file {where!r} is {reason}: metadata {key!r} is {got!r}, "
                f"expected {wanted!r}; {REBUILD_HINT}",
                reason=reason,
            )


def _check_faiss_layout(payload: memoryview, dim: int, ids: IdArray, where: str) -> None:
    """Walk the serialized IndexIDMap2(IndexFlatL2) byte by byte before FAISS parses it."""
    n = len(ids)
    expected = 2 * (4 + _FAISS_HEADER.size) + 8 + 4 * n * dim + 8 + 8 * n
    if len(payload) != expected:
        raise _corrupt(
            where, f"FAISS section is {len(payload)} bytes, an IDMap2 flat index of {n} "
            f"x {dim} takes {expected}"
        )
    pos = 0
    for fourcc in (b"IxM2", b"IxF2"):
        if bytes(payload[pos : pos + 4]) != fourcc:
            raise _corrupt(
                where, f"FAISS section has {bytes(payload[pos : pos + 4])!r} where {fourcc!r} "
                "belongs (only IndexIDMap2 over IndexFlatL2 is accepted)"
            )
        d, ntotal, _, _, _, metric = _FAISS_HEADER.unpack_from(payload, pos + 4)
        if d != dim or ntotal != n or metric != _METRIC_L2:
            raise _corrupt(
                where, f"FAISS header says d={d}, {ntotal} vectors, metric {metric}; manifest "
                f"says d={dim}, {n} vectors, L2"
            )
        pos += 4 + _FAISS_HEADER.size
    (floats,) = struct.unpack_from("<q", payload, pos)
    pos += 8 + 4 * n * dim
    (count,) = struct.unpack_from("<q", payload, pos)
    if floats != n * dim or count != n:
        raise _corrupt(where, "FAISS section sizes disagree with the manifest")
    stored = np.frombuffer(payload, dtype="<i8", count=n, offset=pos + 8)
    if not np.array_equal(np.sort(stored), ids):
        raise _corrupt(where, "template ids in the FAISS section differ from the manifest")
    # FAISS would load NaN or off-norm templates and then answer no one (or everyone).
    start = 2 * (4 + _FAISS_HEADER.size) + 8
    templates = np.frombuffer(payload, dtype="<f4", count=n * dim, offset=start).reshape(n, dim)
    finite = np.isfinite(templates).all(axis=1)
    norms = np.linalg.norm(templates, axis=1) if n else np.ones(0)
    bad = np.flatnonzero(~finite | ~(np.abs(norms - 1.0) <= NORM_TOLERANCE))
    if bad.size:
        raise _corrupt(
            where, f"template {int(stored[bad[0]])} is not a finite unit-norm vector "
            f"(norm {float(norms[bad[0]]):.6g})"
        )
