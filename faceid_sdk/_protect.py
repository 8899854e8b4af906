"""Template protection at rest: a secret, renewable rotation of every stored vector.

A :class:`TemplateProtector` holds an orthogonal matrix ``Q`` derived from a secret key.
Stored templates and incoming queries are both multiplied by ``Q`` before they reach the
store or the index. An orthogonal map preserves Euclidean distances exactly (up to
float32 round-off), so every match, rejection and ambiguity decision is the one the raw
vectors would give, while the store, its backups and the index file hold only rotated
vectors that are useless against another deployment (another key) and can be re-keyed
after a leak without asking anyone to enroll again.

What it is not: irreversible. ``Q`` is recovered exactly by least squares (orthogonal
Procrustes) from about ``dim`` known (raw, protected) pairs, e.g. from an attacker who
enrolled themselves a few times and also stole the database. docs/security.md says so
and compares it with bit-projection hashing and homomorphic matching.

Derivation. ``Q`` must be the same on every machine and every NumPy release, forever:
the key's templates would be lost otherwise. NumPy's random streams are explicitly not
stable across versions, so the Gaussian entries come from SHAKE-256 output (64-bit
integers -> uniforms -> Box-Muller), and QR's sign ambiguity is removed by making R's
diagonal positive (which also makes ``Q`` Haar-distributed, Mezzadri 2007). libm may
differ in the last bit of a log or cos between platforms; that moves ``Q`` by ~1e-16,
far below the float32 precision of the vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._atomic import atomic_write_bytes
from .errors import InvalidFeatureError, ProtectionKeyError
from .vectors import FloatMatrix, as_matrix, check_unit_norm

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "TemplateProtector",
    "generate_key",
    "protector_from_environment",
    "write_key_file",
]

#: Environment variable holding the key as hex text (for containers and CI secrets).
KEY_ENV: Final = "FACEID_TEMPLATE_KEY"
#: Environment variable naming a key file (preferred: the key stays out of `ps` and logs).
KEY_FILE_ENV: Final = "FACEID_TEMPLATE_KEY_FILE"

_MIN_KEY_BYTES: Final = 16
_KEY_BYTES: Final = 32
_ROTATION_LABEL: Final = b"faceid-sdk/template-rotation/v1"
_KEY_ID_LABEL: Final = b"faceid-sdk/key-id/v1"


def generate_key() -> bytes:
    """A fresh 256-bit key from the operating system's CSPRNG."""
    return secrets.token_bytes(_KEY_BYTES)


def write_key_file(path: str | os.PathLike[str], key: bytes | None = None) -> bytes:
    """Write *key* (a fresh one by default) as hex to *path*, mode 0600; return the key.

    Keep the file outside the store's directory and its backups: a key stored next to
    the templates it protects protects nothing.
    """
    key = generate_key() if key is None else _check_key(key)
    atomic_write_bytes(path, (key.hex() + "\n").encode("ascii"), mode=0o600)
    return key


def _check_key(key: object) -> bytes:
    if not isinstance(key, (bytes, bytearray)):
        raise ProtectionKeyError(
            f"key must be bytes (got {type(key).__name__}): use generate_key() or "
            "TemplateProtector.from_key_file()"
        )
    if len(key) < _MIN_KEY_BYTES:
        raise ProtectionKeyError(
            f"key must be at least {_MIN_KEY_BYTES} bytes (got {len(key)}): use generate_key(), "
            f"which makes {_KEY_BYTES}"
        )
    return bytes(key)


def _parse_hex_key(text: str, where: str) -> bytes:
    cleaned = text.strip()
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise ProtectionKeyError(
            f"{where} must hold the key as hex text (got {len(cleaned)} characters that are not "
            "hex): create one with `faceid-sdk rotate-key --generate-key-file PATH`"
        ) from None
    return _check_key(key)


def _gaussian(key: bytes, dim: int) -> npt.NDArray[np.float64]:
    """dim x dim standard normal entries from SHAKE-256 of the key, platform-independent."""
    count = dim * dim
    pairs = (count + 1) // 2
    stream = hashlib.shake_256(
        _ROTATION_LABEL + len(key).to_bytes(4, "big") + key + dim.to_bytes(4, "big")
    ).digest(16 * pairs)
    words = np.frombuffer(stream, dtype="<u8")
    # 53 random bits -> uniform in (0, 1]: never 0, so log() is finite.
    uniform = ((words >> np.uint64(11)).astype(np.float64) + 1.0) / float(1 << 53)
    u1, u2 = uniform[0::2], uniform[1::2]
    radius = np.sqrt(-2.0 * np.log(u1))
    normal = np.concatenate([radius * np.cos(2.0 * np.pi * u2), radius * np.sin(2.0 * np.pi * u2)])
    return normal[:count].reshape(dim, dim)


def _rotation(key: bytes, dim: int) -> npt.NDArray[np.float64]:
    q, r = np.linalg.qr(_gaussian(key, dim))
    # QR is unique only up to the signs of R's diagonal; fixing them makes Q a function
    # of the key alone (and Haar-distributed).
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return np.ascontiguousarray(q * signs)


def key_id_of(key: bytes) -> str:
    """A public fingerprint of *key* (16 hex digits): detects a wrong key, reveals nothing."""
    return hmac.new(_check_key(key), _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


class TemplateProtector:
    """A keyed orthogonal rotation of *dim*-dimensional feature vectors.

    >>> TemplateProtector.from_key_file("/run/secrets/faceid.key", 128)  # doctest: +SKIP
    <TemplateProtector key_id=3f0c9a1e5b7d2c48 dim=128>

    Build it from a key file or the environment rather than a literal key:
    :meth:`from_key_file`, :func:`protector_from_environment`. ``protect`` is what the
    :class:`~faceid_sdk.Enroller` applies to every template it stores and every query it
    matches; distances between protected vectors equal distances between raw ones.
    """

    __slots__ = ("_dim", "_key_id", "_matrix")

    def __init__(self, key: bytes, dim: int) -> None:
        key = _check_key(key)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise InvalidFeatureError(
                f"dim must be a positive int (got {dim!r}): use the model's feature length",
                code="dimension",
            )
        self._dim = int(dim)
        self._key_id = key_id_of(key)
        self._matrix = _rotation(key, self._dim)
        self._matrix.setflags(write=False)

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str], dim: int) -> TemplateProtector:
        """Read a hex key written by :func:`write_key_file` or `rotate-key --generate-key-file`."""
        where = os.fspath(path)
        try:
            text = Path(where).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProtectionKeyError(
                f"cannot read the template key file {where!r} ({exc}): check the path given "
                f"by --key-file or ${KEY_FILE_ENV}"
            ) from exc
        return cls(_parse_hex_key(text, f"key file {where!r}"), dim)

    @classmethod
    def new_key_file(cls, path: str | os.PathLike[str], dim: int) -> TemplateProtector:
        """Write a fresh 256-bit key to *path* (hex, mode 0600) and return its protector."""
        return cls(write_key_file(path), dim)

    # -- properties ---------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def key_id(self) -> str:
        """Public fingerprint of the key; the store records it to refuse a wrong key."""
        return self._key_id

    @property
    def matrix(self) -> npt.NDArray[np.float64]:
        """The secret rotation (read-only). Handle it like the key itself."""
        return self._matrix

    def __repr__(self) -> str:  # never the matrix: it *is* the secret
        return f"<TemplateProtector key_id={self._key_id} dim={self._dim}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TemplateProtector):
            return NotImplemented
        return (self._key_id, self._dim) == (other._key_id, other._dim)

    def __hash__(self) -> int:
        return hash((self._key_id, self._dim))

    # -- transforms ---------------------------------------------------------------------

    def protect(self, vectors: Any, *, name: str = "vectors") -> FloatMatrix:
        """Rotate unit-norm rows (``(dim,)`` or ``(n, dim)``); returns ``(n, dim)`` float32."""
        matrix = as_matrix(vectors, self._dim, name=name)
        if len(matrix):
            check_unit_norm(matrix, name=name)
        return _apply(matrix, self._matrix.T)

    def unprotect(self, vectors: Any, *, name: str = "vectors") -> FloatMatrix:
        """The inverse rotation (``Q`` is orthogonal, so its transpose)."""
        matrix = as_matrix(vectors, self._dim, name=name)
        return _apply(matrix, self._matrix)


def rekey_matrix(
    old: TemplateProtector | None, new: TemplateProtector | None, dim: int
) -> npt.NDArray[np.float64]:
    """The one matrix ``M`` with ``protected_new = protected_old @ M`` (row vectors).

    Raw vectors never need to exist: ``M = Q_old @ Q_new^T`` is itself orthogonal.
    ``None`` on either side stands for "unprotected" (the identity).
    """
    for side in (old, new):
        if side is not None and side.dim != dim:
            raise InvalidFeatureError(
                f"protector dim must be the store's dim {dim} (got {side.dim})", code="dimension"
            )
    q_old = np.eye(dim) if old is None else old.matrix
    q_new_t = np.eye(dim) if new is None else new.matrix.T
    return np.ascontiguousarray(q_old @ q_new_t)


def _apply(matrix: FloatMatrix, transform: npt.NDArray[np.float64]) -> FloatMatrix:
    # float64 product, then one rounding to float32: the norm stays 1 within ~1e-7.
    return np.ascontiguousarray(matrix.astype(np.float64) @ transform, dtype=np.float32)


def protector_from_environment(
    dim: int,
    *,
    key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TemplateProtector | None:
    """The protector named by *key_file*, else ``$FACEID_TEMPLATE_KEY_FILE``, else
    ``$FACEID_TEMPLATE_KEY`` (hex); ``None`` when none is set."""
    env = os.environ if environ is None else environ
    if key_file is not None:
        return TemplateProtector.from_key_file(key_file, dim)
    if env.get(KEY_FILE_ENV):
        return TemplateProtector.from_key_file(env[KEY_FILE_ENV], dim)
    if env.get(KEY_ENV):
        return TemplateProtector(_parse_hex_key(env[KEY_ENV], f"${KEY_ENV}"), dim)
    return None
