"""Every error the SDK raises for bad input or a broken environment.

One base class, so callers can catch everything the SDK means with one clause,
and leaves that also subclass the builtin they resemble, so existing
``except ValueError`` code keeps working::

    FaceIDError(Exception)
    ├── InvalidFeatureError(FaceIDError, ValueError)   a vector or payload is unusable
    │   └── ModelMismatchError                          made by another model, or for another dim
    ├── InvalidImageError(FaceIDError, ValueError)     a photo is unreadable, or has no usable face
    ├── UnknownIdentityError(FaceIDError, KeyError)     no such identity is enrolled
    ├── InvalidIdentityError(FaceIDError, ValueError)   an identity name is empty or malformed
    ├── StoreError(FaceIDError, OSError)                the durable store cannot be read or written
    ├── IndexFileError(FaceIDError, ValueError)         an index file is corrupt, stale or foreign
    ├── ProtectionKeyError(FaceIDError, ValueError)     template key missing, malformed or wrong
    └── BackendUnavailableError(FaceIDError, ImportError)  an optional extra is not installed

Messages follow one template: what was expected, what arrived, and what to do.
``InvalidFeatureError.code`` is a stable machine-readable reason (``"truncated"``,
``"checksum"``, ...) shared with the JavaScript client through the codec test vectors.
"""

from __future__ import annotations

__all__ = [
    "ApiKeyError",
    "BackendUnavailableError",
    "FaceIDError",
    "IndexFileError",
    "InvalidFeatureError",
    "InvalidIdentityError",
    "InvalidImageError",
    "ModelMismatchError",
    "ProtectionKeyError",
    "StoreError",
    "UnknownIdentityError",
]


class FaceIDError(Exception):
    """Base class of every error the SDK raises on purpose."""

    #: Process exit status the CLI uses for this kind of error.
    exit_code: int = 1


class InvalidFeatureError(FaceIDError, ValueError):
    """A feature vector or an encoded payload cannot be used.

    ``code`` names the reason in a form that programs (and the test vectors) can match.
    """

    exit_code = 65  # EX_DATAERR

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


class ModelMismatchError(InvalidFeatureError):
    """The vector was produced by another model (or has another dimension) than expected."""


class InvalidImageError(FaceIDError, ValueError):
    """A photo cannot be used: not an image, no face, a face too small, or several faces.

    ``code`` is one of ``"not_image"``, ``"no_face"``, ``"too_small"``, ``"several_faces"``
    (the browser client's states use the same names).
    """

    exit_code = 65  # EX_DATAERR

    def __init__(self, message: str, *, code: str = "not_image") -> None:
        super().__init__(message)
        self.code = code


class UnknownIdentityError(FaceIDError, KeyError):
    """The named identity is not enrolled."""

    exit_code = 66  # EX_NOINPUT

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidIdentityError(FaceIDError, ValueError):
    """An identity name is empty, too long or contains control characters."""

    exit_code = 64  # EX_USAGE


class StoreError(FaceIDError, OSError):
    """The durable store cannot be opened, read or written; nothing acknowledged is lost."""

    exit_code = 74  # EX_IOERR


class IndexFileError(FaceIDError, ValueError):
    """An index file is corrupt, stale or belongs to another store; rebuild it from the store.

    ``reason`` says which, for programs: ``"missing"``, ``"stale"`` (the store has moved on),
    ``"foreign"`` (another store's, model's or key's file), ``"mismatch"`` (its content is not
    the store's: forged, or a restored copy), ``"format"`` (another format version),
    ``"corrupt"`` (damaged, truncated or not a regular file), or ``"ahead"`` (the store is
    *behind* its index: acknowledged writes were lost).
    """

    exit_code = 74  # EX_IOERR

    def __init__(self, message: str, *, reason: str = "corrupt") -> None:
        super().__init__(message)
        self.reason = reason


class ProtectionKeyError(FaceIDError, ValueError):
    """The template-protection key is missing, malformed, or not the store's key."""

    exit_code = 78  # EX_CONFIG


class ApiKeyError(FaceIDError, ValueError):
    """An API key request cannot be done: a bad name or scope, a name taken, no such key."""

    exit_code = 64  # EX_USAGE


class BackendUnavailableError(FaceIDError, ImportError):
    """An optional backend is requested but its extra is not installed."""

    exit_code = 69  # EX_UNAVAILABLE
