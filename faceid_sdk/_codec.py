"""The wire format of a face feature vector, and the only way in and out of it.

A payload is a small little-endian binary record (see ``docs/wire-format.md`` for
every byte)::

    magic "FIDV" | version u8 | dtype u8 | dim u16 | id_len u8 | model id | elements | CRC-32 u32

and its text form is the same bytes in unpadded base64url. :meth:`FeatureCodec.decode`
runs its checks in a fixed order and raises :class:`~faceid_sdk.errors.InvalidFeatureError`
(or :class:`~faceid_sdk.errors.ModelMismatchError`) whose ``code`` names the first
failed check; the codes are shared with the JavaScript client through
``tests/vectors/codec_vectors.json``.
"""

from __future__ import annotations

import binascii
import re
import struct
import zlib
from collections.abc import Iterable
from typing import Any, Final, Literal, NoReturn

import attrs
import numpy as np
import numpy.typing as npt

from .errors import InvalidFeatureError, ModelMismatchError
from .vectors import NORM_TOLERANCE

__all__ = [
    "MAGIC",
    "MAX_DIM",
    "MAX_MODEL_ID_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_TEXT_CHARS",
    "WIRE_VERSION",
    "FeatureCodec",
    "PayloadHeader",
    "peek_header",
]

DType = Literal["float32", "float16"]
FloatVector = npt.NDArray[np.float32]

MAGIC: Final = b"FIDV"
WIRE_VERSION: Final = 1
MAX_MODEL_ID_LENGTH: Final = 64
#: Largest dimension a payload may carry; far above any face embedding (FFEM-AM: 128).
MAX_DIM: Final = 2048

_FIXED = struct.Struct("<4sBBHB")  # magic, version, dtype, dim, model id length
_CRC = struct.Struct("<I")
_HEADER_MIN: Final = _FIXED.size  # 9
_CRC_SIZE: Final = _CRC.size  # 4

#: Hard cap checked before any parsing: the largest payload a valid header can describe.
MAX_PAYLOAD_BYTES: Final = _HEADER_MIN + MAX_MODEL_ID_LENGTH + 4 * MAX_DIM + _CRC_SIZE
#: Length of MAX_PAYLOAD_BYTES in unpadded base64url.
MAX_TEXT_CHARS: Final = (MAX_PAYLOAD_BYTES * 4 + 2) // 3

_DTYPE_CODES: Final[dict[str, int]] = {"float32": 1, "float16": 2}
# code -> (name, little-endian numpy dtype, bytes per element)
_DTYPES: Final[dict[int, tuple[DType, np.dtype[Any], int]]] = {
    1: ("float32", np.dtype("<f4"), 4),
    2: ("float16", np.dtype("<f2"), 2),
}

_MODEL_ID_RE = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_B64URL_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE: Final = {c: i for i, c in enumerate(_B64URL_ALPHABET)}
_URL_TO_STD: Final = bytes.maketrans(b"-_", b"+/")

# Compared against the squared norm (in float64, as JavaScript computes it), so that one
# dot product decides validity: a NaN or Inf anywhere makes it NaN or Inf, which fails
# both comparisons, and the precise reason is looked for only then.
_NORM2_LO: Final = (1.0 - NORM_TOLERANCE) ** 2
_NORM2_HI: Final = (1.0 + NORM_TOLERANCE) ** 2


@attrs.frozen(repr=False)
class PayloadHeader:
    """What a payload says about itself: format version, element type, dimension, model id."""

    version: int
    dtype: DType
    dim: int
    model_id: str

    def __repr__(self) -> str:
        return (
            f"PayloadHeader(version={self.version}, dtype={self.dtype!r}, dim={self.dim}, "
            f"model_id={self.model_id!r})"
        )


@attrs.frozen(repr=False)
class FeatureCodec:
    """Encode and decode the feature vectors of one model (``model_id``) and dimension.

    Args:
        model_id: Fingerprint of the weights that produce the vectors, ASCII letters,
            digits, ``.``, ``_`` or ``-``, 1 to 64 characters (e.g. ``"ffem-am-128-3f2a9c1b0d4e"``).
        dim: Number of elements of a vector, 1 to :data:`MAX_DIM`.
        dtype: Element type :meth:`encode` writes by default: ``"float32"`` (exact) or
            ``"float16"`` (half the payload, relative error below 2**-11 per element).
            :meth:`decode` accepts both whatever this says.
    """

    model_id: str
    dim: int
    dtype: DType = "float32"
    _model_id_bytes: bytes = attrs.field(init=False, eq=False)
    _offset: int = attrs.field(init=False, eq=False)
    # Per dtype code: the exact header bytes and total size of every valid payload.
    _prefixes: dict[int, tuple[bytes, int]] = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not _MODEL_ID_RE.fullmatch(
            self.model_id.encode("ascii", "replace")
        ):
            raise InvalidFeatureError(
                "model_id must be 1 to 64 ASCII letters, digits, '.', '_' or '-' "
                f"(got {self.model_id!r}): use the fingerprint the model was exported with",
                code="model_id",
            )
        if (
            isinstance(self.dim, bool)
            or not isinstance(self.dim, int)
            or not (1 <= self.dim <= MAX_DIM)
        ):
            raise InvalidFeatureError(
                f"dim must be an int from 1 to {MAX_DIM} (got {self.dim!r})", code="dimension"
            )
        _dtype_code(self.dtype)
        mid = self.model_id.encode("ascii")
        offset = _HEADER_MIN + len(mid)
        prefixes = {
            code: (
                _FIXED.pack(MAGIC, WIRE_VERSION, code, self.dim, len(mid)) + mid,
                offset + size * self.dim + _CRC_SIZE,
            )
            for code, (_, _, size) in _DTYPES.items()
        }
        object.__setattr__(self, "_model_id_bytes", mid)
        object.__setattr__(self, "_offset", offset)
        object.__setattr__(self, "_prefixes", prefixes)

    def __repr__(self) -> str:
        extra = "" if self.dtype == "float32" else f", dtype={self.dtype!r}"
        return f"FeatureCodec(model_id={self.model_id!r}, dim={self.dim}{extra})"

    # -- encoding ---------------------------------------------------------------------

    def encode(self, vector: Any, *, dtype: DType | None = None) -> bytes:
        """Return the binary payload of one L2-normalized vector of shape ``(dim,)``.

        Refuses, with the same ``code``, exactly the vectors :meth:`decode` would refuse:
        the check runs on the elements as they will be written (after float16 rounding).
        """
        code = _dtype_code(self.dtype if dtype is None else dtype)
        _, wire_dtype, _ = _DTYPES[code]
        array = self._coerce(vector)
        with np.errstate(over="ignore"):  # float16 overflow becomes Inf, refused below
            wire = array.astype(wire_dtype)
        _check_values(wire.astype(np.float32), where="vector")
        body = self._prefixes[code][0] + wire.tobytes()
        return body + _CRC.pack(zlib.crc32(body))

    def encode_text(self, vector: Any, *, dtype: DType | None = None) -> str:
        """Return the text form of :meth:`encode`: unpadded base64url, safe in JSON and URLs."""
        raw = self.encode(vector, dtype=dtype)
        return (
            binascii.b2a_base64(raw, newline=False)
            .rstrip(b"=")
            .translate(_STD_TO_URL)
            .decode("ascii")
        )

    def _coerce(self, vector: Any) -> FloatVector:
        try:
            array = np.asarray(vector)
        except (TypeError, ValueError) as exc:  # ragged nested lists
            raise InvalidFeatureError(
                f"vector must be a sequence of {self.dim} numbers "
                f"(got {type(vector).__name__}: {exc})",
                code="type",
            ) from None
        if array.dtype.kind not in "iuf":
            raise InvalidFeatureError(
                f"vector must hold real numbers (got dtype {array.dtype} from "
                f"{type(vector).__name__}): pass a float array of shape ({self.dim},)",
                code="type",
            )
        if array.ndim != 1:
            raise InvalidFeatureError(
                f"vector must have shape ({self.dim},) (got {array.shape}): encode one "
                "vector per payload",
                code="shape",
            )
        if array.shape[0] != self.dim:
            raise ModelMismatchError(
                f"vector dimension must be {self.dim} for model {self.model_id!r} "
                f"(got {array.shape[0]}): use the codec of the model that made the vector",
                code="dimension",
            )
        with np.errstate(over="ignore"):  # float64 overflow becomes Inf, refused later
            return array.astype(np.float32)

    # -- decoding ---------------------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview) -> FloatVector:
        """Return the float32 vector of shape ``(dim,)`` carried by a binary payload.

        Raises :class:`InvalidFeatureError` (or :class:`ModelMismatchError`) for the first
        failed check, in the order documented in ``docs/wire-format.md``.
        """
        if type(data) is not bytes:
            data = _as_bytes(data)
        n = len(data)
        # Fast path: a valid payload for this codec has one of two exact headers and
        # sizes, so one prefix comparison stands for the magic, version, dtype, model id
        # and dimension checks; anything else takes the ordered slow path.
        p32, size32 = self._prefixes[1]
        if n == size32 and data.startswith(p32):
            code = 1
        else:
            p16, size16 = self._prefixes[2]
            code = 2 if n == size16 and data.startswith(p16) else self._check_header(data)
        if zlib.crc32(memoryview(data)[:-_CRC_SIZE]) != _CRC.unpack_from(data, n - _CRC_SIZE)[0]:
            _raise_checksum(data)
        vector = np.frombuffer(data, _DTYPES[code][1], self.dim, self._offset).astype(np.float32)
        wide = vector.astype(np.float64)  # float32 squares overflow (and warn) past 1.8e19
        norm2 = float(np.dot(wide, wide))
        if not _NORM2_LO <= norm2 <= _NORM2_HI:
            _raise_values(vector, where="vector")
        return vector

    def decode_text(self, text: str) -> FloatVector:
        """Return the vector carried by the text form (strict unpadded base64url)."""
        return self.decode(_b64url_decode(text))

    def decode_many(self, payloads: Iterable[bytes | bytearray | memoryview]) -> FloatVector:
        """Return an ``(n, dim)`` float32 matrix, one row per binary payload.

        All payloads are checked structurally first (header, length, checksum, model id,
        dimension), then all values; the error names the first failing payload's index.
        """
        start = self._offset
        bodies: dict[int, list[bytes]] = {1: [], 2: []}
        rows: dict[int, list[int]] = {1: [], 2: []}
        for i, item in enumerate(payloads):
            try:
                data = item if type(item) is bytes else _as_bytes(item)
                code = self._check_structure(data)
            except InvalidFeatureError as exc:
                raise _indexed(exc, i) from None
            # Slices joined once and read by one frombuffer: far cheaper per row than
            # a frombuffer and a row assignment each.
            bodies[code].append(data[start:-_CRC_SIZE])
            rows[code].append(i)
        count = len(rows[1]) + len(rows[2])
        out = np.empty((count, self.dim), dtype=np.float32)
        for code, chunks in bodies.items():
            if chunks:
                block = np.frombuffer(b"".join(chunks), _DTYPES[code][1]).reshape(-1, self.dim)
                if len(chunks) == count:
                    out[:] = block
                else:
                    out[rows[code]] = block
        self._check_rows(out)
        return out

    def decode_text_many(self, texts: Iterable[str]) -> FloatVector:
        """Return an ``(n, dim)`` float32 matrix, one row per text payload."""
        raws: list[bytes] = []
        for i, text in enumerate(texts):
            try:
                raws.append(_b64url_decode(text))
            except InvalidFeatureError as exc:
                raise _indexed(exc, i) from None
        return self.decode_many(raws)

    def _check_rows(self, matrix: FloatVector) -> None:
        wide = matrix.astype(np.float64)
        norm2 = np.einsum("ij,ij->i", wide, wide)
        bad = np.flatnonzero(~((norm2 >= _NORM2_LO) & (norm2 <= _NORM2_HI)))
        if bad.size:
            i = int(bad[0])
            try:
                _raise_values(matrix[i], where="vector")
            except InvalidFeatureError as exc:
                raise _indexed(exc, i) from None

    def _check_structure(self, data: bytes) -> int:
        """Run every check before the values; return the dtype code."""
        n = len(data)
        p32, size32 = self._prefixes[1]
        p16, size16 = self._prefixes[2]
        if n == size32 and data.startswith(p32):
            code = 1
        elif n == size16 and data.startswith(p16):
            code = 2
        else:
            code = self._check_header(data)
        if zlib.crc32(memoryview(data)[:-_CRC_SIZE]) != _CRC.unpack_from(data, n - _CRC_SIZE)[0]:
            _raise_checksum(data)
        return code

    def _check_header(self, data: bytes) -> int:
        """The slow path: the ordered checks, ending with model id and dimension."""
        header = _parse(data)  # raises for every structural fault, checksum included
        if header.model_id != self.model_id:
            raise ModelMismatchError(
                f"payload model id must be {self.model_id!r} (got {header.model_id!r}): the "
                "vector was made by another model and is not comparable with this gallery; "
                "update the client's model, or decode with that model's codec",
                code="model_mismatch",
            )
        if header.dim != self.dim:
            raise ModelMismatchError(
                f"payload dimension must be {self.dim} for model {self.model_id!r} "
                f"(got {header.dim}): the client and server disagree about the model; "
                "re-export the model with a new model id",
                code="dimension",
            )
        return _DTYPE_CODES[header.dtype]


def peek_header(data: bytes | bytearray | memoryview | str) -> PayloadHeader:
    """Return the header of a payload (binary, or text if *data* is a ``str``).

    Runs every check that needs no codec (size, magic, version, dtype, model id format,
    length, checksum) but not the model id / dimension match or the values: a server with
    several models uses it to pick the codec, then calls that codec's ``decode``.
    """
    raw = _b64url_decode(data) if isinstance(data, str) else _as_bytes(data)
    return _parse(raw)


# -- helpers shared by decode paths ----------------------------------------------------

_STD_TO_URL: Final = bytes.maketrans(b"+/", b"-_")


def _dtype_code(dtype: object) -> int:
    code = _DTYPE_CODES.get(dtype) if isinstance(dtype, str) else None
    if code is None:
        raise InvalidFeatureError(
            f"dtype must be 'float32' or 'float16' (got {dtype!r})", code="dtype"
        )
    return code


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        # A private copy: the caller may mutate a bytearray while we validate it.
        try:
            return bytes(data)
        except ValueError as exc:  # a released memoryview
            raise InvalidFeatureError(
                f"payload must be a readable buffer (got {exc}): pass the bytes themselves",
                code="type",
            ) from None
    hint = (
        ": this looks like the text form; call decode_text() for base64url strings"
        if isinstance(data, str)
        else ""
    )
    raise InvalidFeatureError(
        f"payload must be bytes, bytearray or memoryview (got {type(data).__name__}){hint}",
        code="type",
    )


def _parse(data: bytes) -> PayloadHeader:
    """Checks 1 to 11 of the documented order; return the header of a sound payload."""
    n = len(data)
    if n == 0:
        raise InvalidFeatureError(
            "payload must not be empty (got 0 bytes): the client sent no vector", code="empty"
        )
    if n > MAX_PAYLOAD_BYTES:
        raise InvalidFeatureError(
            f"payload must be at most {MAX_PAYLOAD_BYTES} bytes (got {n}): this is not a "
            "feature vector; reject the request",
            code="oversized",
        )
    if n < _HEADER_MIN:
        raise InvalidFeatureError(
            f"payload must be at least {_HEADER_MIN} bytes to hold a header (got {n}): it "
            "was cut short; resend it complete",
            code="truncated",
        )
    magic, version, dtype_code, dim, id_len = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise InvalidFeatureError(
            f"payload must start with the magic 'FIDV' (hex 46494456) (got hex {magic.hex()}): "
            "this is not a faceid-sdk feature payload; produce it with FeatureCodec.encode",
            code="magic",
        )
    if version != WIRE_VERSION:
        raise InvalidFeatureError(
            f"payload version must be {WIRE_VERSION} (got {version}): the client speaks another "
            "wire format; use matching faceid-sdk versions on client and server",
            code="version",
        )
    dtype_info = _DTYPES.get(dtype_code)
    if dtype_info is None:
        raise InvalidFeatureError(
            f"payload dtype code must be 1 (float32) or 2 (float16) (got {dtype_code}): the "
            "header is corrupt or from a newer client; re-encode with FeatureCodec.encode",
            code="dtype",
        )
    if not 1 <= id_len <= MAX_MODEL_ID_LENGTH:
        raise InvalidFeatureError(
            f"payload model id length must be 1 to {MAX_MODEL_ID_LENGTH} (got {id_len}): the "
            "header is malformed; re-encode with FeatureCodec.encode",
            code="model_id",
        )
    name, _, size = dtype_info
    expected = _HEADER_MIN + id_len + size * dim + _CRC_SIZE
    if n < expected:
        raise InvalidFeatureError(
            f"payload must be {expected} bytes for dim={dim}, dtype={name} and a {id_len}-byte "
            f"model id (got {n}, {expected - n} missing): it was cut short; resend it complete",
            code="truncated",
        )
    if n > expected:
        raise InvalidFeatureError(
            f"payload must be {expected} bytes for dim={dim}, dtype={name} and a {id_len}-byte "
            f"model id (got {n}, {n - expected} extra): remove what was appended after the "
            "checksum",
            code="trailing_bytes",
        )
    mid = data[_HEADER_MIN : _HEADER_MIN + id_len]
    if not _MODEL_ID_RE.fullmatch(mid):
        raise InvalidFeatureError(
            f"payload model id must be ASCII letters, digits, '.', '_' or '-' (got {mid!r}): "
            "the header is malformed; re-encode with FeatureCodec.encode",
            code="model_id",
        )
    if zlib.crc32(memoryview(data)[:-_CRC_SIZE]) != _CRC.unpack_from(data, n - _CRC_SIZE)[0]:
        _raise_checksum(data)
    return PayloadHeader(version=version, dtype=name, dim=dim, model_id=mid.decode("ascii"))


def _raise_checksum(data: bytes) -> NoReturn:
    n = len(data)
    computed = zlib.crc32(memoryview(data)[:-_CRC_SIZE])
    (stored,) = _CRC.unpack_from(data, n - _CRC_SIZE)
    raise InvalidFeatureError(
        f"payload checksum must be {computed:08x} (CRC-32 of the first {n - _CRC_SIZE} bytes) "
        f"(got {stored:08x}): the payload was corrupted in transit; resend it",
        code="checksum",
    )


def _check_values(vector: FloatVector, *, where: str) -> None:
    wide = vector.astype(np.float64)
    norm2 = float(np.dot(wide, wide))
    if not _NORM2_LO <= norm2 <= _NORM2_HI:
        _raise_values(vector, where=where)


def _raise_values(vector: FloatVector, *, where: str) -> NoReturn:
    """Find the precise reason once the squared-norm test has failed."""
    finite = np.isfinite(vector)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise InvalidFeatureError(
            f"{where} must be finite (got {vector[i]} at element {i}): the model output is "
            "broken (or overflowed float16); do not send it",
            code="non_finite",
        )
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    raise InvalidFeatureError(
        f"{where} must be L2-normalized, norm 1 ± {NORM_TOLERANCE} (got norm {norm:.6g}): "
        "divide by its L2 norm before encoding; a zero vector is refused because it lies "
        "at distance 1.0 from every template",
        code="norm",
    )


def _indexed(exc: InvalidFeatureError, index: int) -> InvalidFeatureError:
    """The same error, its message prefixed with the payload's position in a batch."""
    return type(exc)(f"payloads[{index}]: {exc}", code=exc.code)


def _b64url_decode(text: object) -> bytes:
    """Strict unpadded base64url: every character, the length and the last bits are checked."""
    if not isinstance(text, str):
        hint = (
            "; call decode() for binary payloads"
            if isinstance(text, (bytes, bytearray, memoryview))
            else ""
        )
        raise InvalidFeatureError(
            f"text payload must be a str of base64url (got {type(text).__name__}){hint}",
            code="type",
        )
    n = len(text)
    if n == 0:
        raise InvalidFeatureError(
            "text payload must not be empty (got ''): the client sent no vector", code="empty"
        )
    if n > MAX_TEXT_CHARS:
        raise InvalidFeatureError(
            f"text payload must be at most {MAX_TEXT_CHARS} characters (got {n}): this is "
            "not a feature vector; reject the request",
            code="oversized",
        )
    raw = text.encode("ascii", "replace")  # any non-ASCII char becomes '?', refused next
    if raw.translate(None, _B64URL_ALPHABET):
        _raise_alphabet(text)
    if n % 4 == 1:
        raise InvalidFeatureError(
            f"text payload length must not be 1 more than a multiple of 4 (got {n} characters): "
            "no byte string encodes to that length; the text was cut or extended",
            code="base64",
        )
    last = _B64URL_VALUE[raw[-1]]
    if (n % 4 == 2 and last & 0x0F) or (n % 4 == 3 and last & 0x03):
        raise InvalidFeatureError(
            f"text payload must be canonical base64url (got unused low bits set in the last "
            f"character {text[-1]!r}): the text was altered; re-encode with encode_text",
            code="base64",
        )
    return binascii.a2b_base64(raw.translate(_URL_TO_STD) + b"=" * (-n % 4))


def _raise_alphabet(text: str) -> NoReturn:
    index, char = next((i, c) for i, c in enumerate(text) if ord(c) not in _B64URL_VALUE)
    if char == "=":
        why = "padding '=' is not used; strip trailing '='"
    elif char in "+/":
        why = "that is standard base64; use the URL-safe alphabet ('-' and '_')"
    elif char.isspace():
        why = "whitespace and line breaks are not allowed; send the text on one line"
    else:
        why = "send the string encode_text() returned, unchanged"
    raise InvalidFeatureError(
        f"text payload must use only the base64url alphabet A-Z a-z 0-9 '-' '_' "
        f"(got {char!r} at position {index}): {why}",
        code="base64",
    )
