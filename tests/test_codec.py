"""FeatureCodec: the shared conformance vectors, the error contract and Hypothesis properties."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from faceid_sdk import FeatureCodec, InvalidFeatureError, ModelMismatchError
from faceid_sdk._codec import MAX_DIM, MAX_PAYLOAD_BYTES, MAX_TEXT_CHARS, PayloadHeader, peek_header

VECTORS_DIR = Path(__file__).with_name("vectors")
VECTORS_FILE = VECTORS_DIR / "codec_vectors.json"
DATA = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
OK = [v for v in DATA["vectors"] if v["expect"] == "ok"]
ERRORS = [v for v in DATA["vectors"] if v["expect"] == "error"]
BINARY_ERRORS = [v for v in ERRORS if v["form"] == "binary"]
VALUE_CODES = ("dimension", "non_finite", "norm")
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_codec_vectors", VECTORS_DIR / "make_codec_vectors.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError("cannot load tests/vectors/make_codec_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in entries]


def _codec(entry: dict[str, Any]) -> FeatureCodec:
    return FeatureCodec(entry["model_id"], entry["dim"])


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _elements(raw: bytes) -> np.ndarray:
    """The float32 elements of a structurally sound payload, read without the codec."""
    header = peek_header(raw)
    fmt = "<f4" if header.dtype == "float32" else "<f2"
    offset = 9 + len(header.model_id)
    return np.frombuffer(raw, fmt, header.dim, offset).astype(np.float32)


def _unit(values: np.ndarray) -> np.ndarray:
    wide = values.astype(np.float64)
    return (wide / np.linalg.norm(wide)).astype(np.float32)


# -- the shared vectors ------------------------------------------------------------------


def test_generator_reproduces_the_committed_file() -> None:
    """Regenerating the vectors gives the committed file byte for byte."""
    assert GEN.build() == VECTORS_FILE.read_text(encoding="utf-8")


def test_vectors_cover_every_error_code() -> None:
    """Each stable error code a payload can trigger has at least one vector."""
    codes = {v["code"] for v in ERRORS}
    assert codes == {
        "empty", "oversized", "truncated", "magic", "version", "dtype", "model_id",
        "trailing_bytes", "checksum", "model_mismatch", "dimension", "non_finite", "norm",
        "base64",
    }  # fmt: skip


def test_vector_limits_match_the_codec() -> None:
    """The limits written in the vectors file are the codec's."""
    assert (DATA["max_dim"], DATA["max_payload_bytes"], DATA["max_text_chars"]) == (
        MAX_DIM,
        MAX_PAYLOAD_BYTES,
        MAX_TEXT_CHARS,
    )


@pytest.mark.parametrize("entry", OK, ids=_ids(OK))
def test_valid_vector_decodes_exactly(entry: dict[str, Any]) -> None:
    """A valid payload decodes, from binary and text, to exactly the listed float32 vector."""
    codec = _codec(entry)
    expected = np.array(entry["vector"], dtype=np.float32)
    for decoded in (codec.decode(bytes.fromhex(entry["hex"])), codec.decode_text(entry["text"])):
        assert decoded.dtype == np.float32 and decoded.shape == (entry["dim"],)
        np.testing.assert_array_equal(decoded, expected)
        assert np.array_equal(np.signbit(decoded), np.signbit(expected))


@pytest.mark.parametrize("entry", OK, ids=_ids(OK))
def test_valid_vector_encodes_to_the_exact_bytes(entry: dict[str, Any]) -> None:
    """Encoding the listed vector with the listed dtype reproduces the payload and its text."""
    codec = _codec(entry)
    vector = np.array(entry["vector"], dtype=np.float32)
    assert codec.encode(vector, dtype=entry["dtype"]).hex() == entry["hex"]
    assert codec.encode_text(vector, dtype=entry["dtype"]) == entry["text"]


@pytest.mark.parametrize("entry", ERRORS, ids=_ids(ERRORS))
def test_invalid_vector_raises_its_code(entry: dict[str, Any]) -> None:
    """An invalid payload raises the listed error class and code."""
    codec = _codec(entry)
    expected = ModelMismatchError if entry["error_class"] == "ModelMismatchError" else None
    with pytest.raises(InvalidFeatureError) as info:
        if entry["form"] == "binary":
            codec.decode(bytes.fromhex(entry["hex"]))
        else:
            codec.decode_text(entry["text"])
    assert info.value.code == entry["code"]
    assert isinstance(info.value, ModelMismatchError) == (expected is not None)


@pytest.mark.parametrize("entry", BINARY_ERRORS, ids=_ids(BINARY_ERRORS))
def test_invalid_binary_vector_gives_the_same_code_as_text(entry: dict[str, Any]) -> None:
    """The text form of an invalid binary payload fails with the same code."""
    with pytest.raises(InvalidFeatureError) as info:
        _codec(entry).decode_text(_b64url(bytes.fromhex(entry["hex"])))
    assert info.value.code == entry["code"]


VALUE_ERRORS = [v for v in BINARY_ERRORS if v["code"] in VALUE_CODES]


@pytest.mark.parametrize("entry", VALUE_ERRORS, ids=_ids(VALUE_ERRORS))
def test_encode_refuses_what_decode_refuses_in_the_vectors(entry: dict[str, Any]) -> None:
    """Encoding the elements of a payload refused for its values fails with the same code."""
    raw = bytes.fromhex(entry["hex"])
    dtype = peek_header(raw).dtype
    with pytest.raises(InvalidFeatureError) as info:
        _codec(entry).encode(_elements(raw), dtype=dtype)
    assert info.value.code == entry["code"]


def test_wire_format_page_matches_the_vectors() -> None:
    """The spec page's worked examples and code table agree with the vectors file."""
    page = (Path(__file__).parent.parent / "docs" / "wire-format.md").read_text(encoding="utf-8")
    by_name = {v["name"]: v for v in DATA["vectors"]}
    for name in ("f32-demo", "f16-demo"):
        assert by_name[name]["hex"] in page and by_name[name]["text"] in page
    for code in {v["code"] for v in ERRORS}:
        assert f"`{code}`" in page
    namespace: dict[str, object] = {}
    for block in re.findall(r"```python\n(.*?)```", page, re.DOTALL):
        exec(compile(block, "docs/wire-format.md", "exec"), namespace)


# -- the API contract --------------------------------------------------------------------

CODEC = FeatureCodec("ffem-am-128-3f2a9c1b0d4e", 128)
VECTOR = _unit(np.random.default_rng(7).standard_normal(128))


def test_reprs_are_short() -> None:
    """Reprs name the model and dimension, never the numbers."""
    assert repr(CODEC) == "FeatureCodec(model_id='ffem-am-128-3f2a9c1b0d4e', dim=128)"
    assert repr(FeatureCodec("m", 4, dtype="float16")) == (
        "FeatureCodec(model_id='m', dim=4, dtype='float16')"
    )
    assert repr(peek_header(CODEC.encode(VECTOR))) == (
        "PayloadHeader(version=1, dtype='float32', dim=128, model_id='ffem-am-128-3f2a9c1b0d4e')"
    )


def test_codecs_compare_by_value() -> None:
    """Two codecs for the same model, dimension and dtype are equal and hash alike."""
    twin = FeatureCodec("ffem-am-128-3f2a9c1b0d4e", 128)
    assert twin == CODEC and hash(twin) == hash(CODEC)
    assert FeatureCodec("ffem-am-128-3f2a9c1b0d4e", 128, dtype="float16") != CODEC


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"model_id": "", "dim": 4}, "model_id"),
        ({"model_id": "a b", "dim": 4}, "model_id"),
        ({"model_id": "é", "dim": 4}, "model_id"),
        ({"model_id": "x" * 65, "dim": 4}, "model_id"),
        ({"model_id": 5, "dim": 4}, "model_id"),
        ({"model_id": "m", "dim": 0}, "dimension"),
        ({"model_id": "m", "dim": MAX_DIM + 1}, "dimension"),
        ({"model_id": "m", "dim": True}, "dimension"),
        ({"model_id": "m", "dim": 4.0}, "dimension"),
        ({"model_id": "m", "dim": 4, "dtype": "int8"}, "dtype"),
    ],
)
def test_constructor_validates_its_arguments(kwargs: dict[str, Any], code: str) -> None:
    """A malformed model id, dimension or dtype is refused when the codec is made."""
    with pytest.raises(InvalidFeatureError) as info:
        FeatureCodec(**kwargs)
    assert info.value.code == code


def test_decoded_vector_is_a_private_writable_copy() -> None:
    """Decoding a bytearray returns a C-contiguous writable array the buffer cannot change."""
    buffer = bytearray(CODEC.encode(VECTOR))
    decoded = CODEC.decode(buffer)
    buffer[20] ^= 0xFF
    np.testing.assert_array_equal(decoded, VECTOR)
    assert decoded.flags.writeable and decoded.flags.c_contiguous


def test_decode_accepts_memoryview() -> None:
    """A memoryview (also of a non-byte buffer) decodes like the bytes it views."""
    raw = CODEC.encode(VECTOR)
    np.testing.assert_array_equal(CODEC.decode(memoryview(raw)), VECTOR)
    np.testing.assert_array_equal(CODEC.decode(np.frombuffer(raw, np.uint8).data), VECTOR)


def test_decode_of_a_str_points_to_decode_text() -> None:
    """A str passed to decode fails with code 'type' and names decode_text."""
    with pytest.raises(InvalidFeatureError, match="decode_text") as info:
        CODEC.decode(CODEC.encode_text(VECTOR))  # type: ignore[arg-type]
    assert info.value.code == "type"


def test_decode_text_of_bytes_points_to_decode() -> None:
    """Bytes passed to decode_text fail with code 'type' and name decode()."""
    with pytest.raises(InvalidFeatureError, match=r"decode\(\)") as info:
        CODEC.decode_text(CODEC.encode(VECTOR))  # type: ignore[arg-type]
    assert info.value.code == "type"


@pytest.mark.parametrize("data", [None, 42, [1, 2], np.zeros(3)])
def test_decode_of_other_types_fails_with_type(data: Any) -> None:
    """Anything but bytes, bytearray or memoryview fails with code 'type'."""
    with pytest.raises(InvalidFeatureError) as info:
        CODEC.decode(data)
    assert info.value.code == "type"


def test_messages_say_expected_got_and_what_to_do() -> None:
    """An error message names the field, the expectation, what arrived and a fix."""
    raw = bytearray(CODEC.encode(VECTOR))
    raw[30] ^= 1
    with pytest.raises(InvalidFeatureError) as info:
        CODEC.decode(bytes(raw))
    message = str(info.value)
    assert "checksum must be" in message and "(got" in message and "resend" in message


def test_float16_codec_default_and_keyword_override() -> None:
    """The codec's dtype is the default, and the encode keyword overrides it."""
    half = FeatureCodec("ffem-am-128-3f2a9c1b0d4e", 128, dtype="float16")
    assert peek_header(half.encode(VECTOR)).dtype == "float16"
    assert peek_header(half.encode(VECTOR, dtype="float32")).dtype == "float32"
    assert len(half.encode(VECTOR)) == 9 + 24 + 2 * 128 + 4
    with pytest.raises(InvalidFeatureError) as info:
        half.encode(VECTOR, dtype="float64")  # type: ignore[arg-type]
    assert info.value.code == "dtype"


@pytest.mark.parametrize(
    ("vector", "code", "error"),
    [
        (np.ones((1, 128), np.float32) / np.sqrt(128), "shape", InvalidFeatureError),
        (np.ones(127, np.float32) / np.sqrt(127), "dimension", ModelMismatchError),
        (["a"] * 128, "type", InvalidFeatureError),
        ([[1.0], [1.0, 2.0]], "type", InvalidFeatureError),
        (np.full(128, 1e6), "norm", InvalidFeatureError),
        (np.zeros(128), "norm", InvalidFeatureError),
        (np.full(128, np.nan), "non_finite", InvalidFeatureError),
        (np.full(128, 1e300), "non_finite", InvalidFeatureError),  # float32 overflow
    ],
)
def test_encode_refuses_bad_vectors(vector: Any, code: str, error: type[Exception]) -> None:
    """encode refuses wrong shapes, types, dimensions, non-finite values and bad norms."""
    with pytest.raises(error) as info:
        CODEC.encode(vector)
    assert info.value.code == code  # type: ignore[attr-defined]


def test_encode_float16_overflow_is_non_finite() -> None:
    """A value beyond float16's range becomes Inf on the wire, so encode refuses it."""
    vector = np.zeros(128)
    vector[0] = 70000.0
    with pytest.raises(InvalidFeatureError) as info:
        CODEC.encode(vector, dtype="float16")
    assert info.value.code == "non_finite"


def test_encode_accepts_lists_and_float64() -> None:
    """A list of Python floats or a float64 array encodes like its float32 values."""
    expected = CODEC.encode(VECTOR)
    assert CODEC.encode(VECTOR.astype(np.float64)) == expected
    assert CODEC.encode(VECTOR.tolist()) == expected


def test_peek_header_reads_other_models_without_a_codec() -> None:
    """peek_header returns the header of any sound payload, binary or text."""
    raw = FeatureCodec("other.model_v2", 3).encode(_unit(np.ones(3)), dtype="float16")
    expected = PayloadHeader(version=1, dtype="float16", dim=3, model_id="other.model_v2")
    assert peek_header(raw) == expected
    assert peek_header(_b64url(raw)) == expected
    assert peek_header(bytearray(raw)) == expected


def test_peek_header_checks_the_checksum() -> None:
    """peek_header refuses a corrupted payload, so a server never routes on a broken header."""
    raw = bytearray(CODEC.encode(VECTOR))
    raw[-1] ^= 1
    with pytest.raises(InvalidFeatureError) as info:
        peek_header(bytes(raw))
    assert info.value.code == "checksum"


def test_decode_many_mixes_dtypes_and_buffer_types() -> None:
    """decode_many returns one float32 row per payload, whatever its dtype or buffer type."""
    rows = np.stack([_unit(np.random.default_rng(i).standard_normal(128)) for i in range(5)])
    payloads: list[Any] = [
        CODEC.encode(rows[0]),
        CODEC.encode(rows[1], dtype="float16"),
        bytearray(CODEC.encode(rows[2])),
        memoryview(CODEC.encode(rows[3], dtype="float16")),
        CODEC.encode(rows[4]),
    ]
    matrix = CODEC.decode_many(payloads)
    assert matrix.shape == (5, 128) and matrix.dtype == np.float32
    for i, payload in enumerate(payloads):
        np.testing.assert_array_equal(matrix[i], CODEC.decode(payload))
    assert CODEC.decode_many([]).shape == (0, 128)


def test_decode_many_names_the_failing_payload() -> None:
    """A batch error keeps the code and class and names the payload's index."""
    good = CODEC.encode(VECTOR)
    other = FeatureCodec("other", 128).encode(VECTOR)
    with pytest.raises(ModelMismatchError, match=r"payloads\[2\]") as info:
        CODEC.decode_many([good, good, other])
    assert info.value.code == "model_mismatch"
    zero = GEN.pack([0.0] * 128, CODEC.model_id)
    with pytest.raises(InvalidFeatureError, match=r"payloads\[1\]") as norm_info:
        CODEC.decode_many([good, zero, good])
    assert norm_info.value.code == "norm"


def test_decode_text_many_matches_decode_many() -> None:
    """decode_text_many gives the rows decode_many gives for the same payloads."""
    texts = [CODEC.encode_text(VECTOR), CODEC.encode_text(VECTOR, dtype="float16")]
    binaries = [CODEC.encode(VECTOR), CODEC.encode(VECTOR, dtype="float16")]
    np.testing.assert_array_equal(CODEC.decode_text_many(texts), CODEC.decode_many(binaries))
    with pytest.raises(InvalidFeatureError, match=r"payloads\[1\]") as info:
        CODEC.decode_text_many([texts[0], texts[1] + "="])
    assert info.value.code == "base64"


# -- Hypothesis properties ---------------------------------------------------------------

finite32 = st.floats(-1.0, 1.0, width=32, allow_subnormal=True)


@st.composite
def unit_vectors(draw: st.DrawFn, max_dim: int = 64) -> np.ndarray:
    """A random L2-normalized float32 vector of dimension 1 to max_dim."""
    dim = draw(st.integers(1, max_dim))
    raw = draw(hnp.arrays(np.float32, dim, elements=finite32))
    assume(np.linalg.norm(raw.astype(np.float64)) > 1e-6)
    return _unit(raw)


@PROPERTY
@given(unit_vectors(), st.sampled_from(["float32", "float16"]), st.booleans())
def test_round_trip_of_any_valid_vector(vector: np.ndarray, dtype: str, text: bool) -> None:
    """A unit vector survives encode and decode: exactly in float32, within rounding in float16."""
    codec = FeatureCodec("prop-model", vector.shape[0])
    if text:
        decoded = codec.decode_text(codec.encode_text(vector, dtype=dtype))  # type: ignore[arg-type]
    else:
        decoded = codec.decode(codec.encode(vector, dtype=dtype))  # type: ignore[arg-type]
    if dtype == "float32":
        np.testing.assert_array_equal(decoded, vector)
    else:  # float16: 11 significant bits, absolute step 2**-24 among subnormals
        assert np.all(np.abs(decoded - vector) <= np.abs(vector) * 2.0**-11 + 2.0**-24)


@st.composite
def mutated_payloads(draw: st.DrawFn) -> tuple[FeatureCodec, np.ndarray, bytes]:
    """A valid payload, then one byte replaced, the tail cut or bytes appended."""
    vector = draw(unit_vectors(max_dim=16))
    codec = FeatureCodec("prop-model", vector.shape[0])
    raw = codec.encode(vector, dtype=draw(st.sampled_from(["float32", "float16"])))
    original = codec.decode(raw)
    kind = draw(st.sampled_from(["replace", "truncate", "extend"]))
    if kind == "replace":
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    elif kind == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    else:
        raw += draw(st.binary(min_size=1, max_size=8))
    return codec, original, raw


@PROPERTY
@given(mutated_payloads())
def test_mutated_payload_decodes_the_same_or_raises(case: tuple[FeatureCodec, Any, bytes]) -> None:
    """A mutated payload decodes to the original vector or raises InvalidFeatureError only."""
    codec, vector, raw = case
    try:
        decoded = codec.decode(raw)
    except InvalidFeatureError:
        return
    np.testing.assert_array_equal(decoded, vector)  # the mutation was a no-op


@PROPERTY
@given(unit_vectors(max_dim=16), st.data())
def test_mutated_text_decodes_the_same_or_raises(vector: np.ndarray, data: st.DataObject) -> None:
    """A valid text with one character replaced, cut or extended decodes the same or raises."""
    codec = FeatureCodec("prop-model", vector.shape[0])
    text = codec.encode_text(vector)
    i = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.characters(codec="utf-8"))
    variant = data.draw(
        st.sampled_from([text[:i] + char + text[i + 1 :], text[:i], text + char, char + text])
    )
    try:
        decoded = codec.decode_text(variant)
    except InvalidFeatureError:
        return
    np.testing.assert_array_equal(decoded, vector)


@PROPERTY
@given(st.one_of(st.text(max_size=64), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ-_=+/ ", max_size=64)))
def test_random_text_raises_only_invalid_feature_error(text: str) -> None:
    """Random text, in or out of the base64url alphabet, raises InvalidFeatureError only."""
    with pytest.raises(InvalidFeatureError):
        CODEC.decode_text(text)


@PROPERTY
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_invalid_feature_error(raw: bytes) -> None:
    """Random bytes, also behind a valid header prefix, raise InvalidFeatureError only."""
    for data in (raw, CODEC.encode(VECTOR)[:33] + raw):
        with pytest.raises(InvalidFeatureError):
            CODEC.decode(data)


any32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)
half_range = st.floats(-65000, 65000, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])


@PROPERTY
@given(st.data(), st.sampled_from(["float32", "float16"]), st.booleans())
def test_encode_refuses_exactly_what_decode_refuses(
    data: st.DataObject, dtype: str, scale_to_unit: bool
) -> None:
    """For any float32 vector, encode and decode of a hand-built payload agree on the error code."""
    elements = any32 if dtype == "float32" else half_range
    vector = data.draw(hnp.arrays(np.float32, data.draw(st.integers(1, 8)), elements=elements))
    if scale_to_unit and np.isfinite(vector).all() and np.linalg.norm(vector.astype(float)) > 0:
        vector = _unit(vector)
    codec = FeatureCodec("prop-model", vector.shape[0])
    payload = GEN.pack([float(x) for x in vector], "prop-model", dtype)  # independent encoder
    try:
        encoded = codec.encode(vector, dtype=dtype)  # type: ignore[arg-type]
    except InvalidFeatureError as refused:
        with pytest.raises(InvalidFeatureError) as info:
            codec.decode(payload)
        assert info.value.code == refused.code
    else:
        assert encoded == payload
        codec.decode(payload)
