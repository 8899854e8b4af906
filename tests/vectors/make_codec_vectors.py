"""Generate ``codec_vectors.json``: the shared conformance vectors of the feature wire format.

This is a second, independent implementation of docs/wire-format.md written with the
standard library only (struct, zlib, base64, random), so that the codec and this script
check each other. Its output is deterministic: ``python3 tests/vectors/make_codec_vectors.py``
rewrites the file byte for byte, and ``--check`` exits 1 if the committed file differs
(tests/test_codec.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import random
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("codec_vectors.json")

MAGIC = b"FIDV"
VERSION = 1
DTYPES = {"float32": (1, "<f", 4), "float16": (2, "<e", 2)}
MAX_DIM = 2048
MAX_MODEL_ID = 64
MAX_PAYLOAD_BYTES = 9 + MAX_MODEL_ID + 4 * MAX_DIM + 4
MAX_TEXT_CHARS = (MAX_PAYLOAD_BYTES * 4 + 2) // 3
NORM_TOLERANCE = 0.01

MAIN_ID = "ffem-am-128-3f2a9c1b0d4e"
DEMO_ID = "demo-4"
LONG_ID = "ffem-am-512." + "0123456789abcdef" * 3 + "0123"  # exactly 64 characters
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# -- the reference encoder ---------------------------------------------------------------


def pack(
    values: list[float],
    model_id: str | bytes,
    dtype: str = "float32",
    *,
    magic: bytes = MAGIC,
    version: int = VERSION,
    dtype_code: int | None = None,
    dim: int | None = None,
    id_len: int | None = None,
) -> bytes:
    """A payload with a correct CRC-32; the keyword overrides forge malformed headers."""
    code, fmt, _ = DTYPES[dtype]
    mid = model_id.encode("ascii") if isinstance(model_id, str) else model_id
    body = struct.pack(
        "<4sBBHB",
        magic,
        version,
        code if dtype_code is None else dtype_code,
        len(values) if dim is None else dim,
        len(mid) if id_len is None else id_len,
    )
    body += mid + b"".join(struct.pack(fmt, v) for v in values)
    return body + struct.pack("<I", zlib.crc32(body))


def text(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def rounded(values: list[float], dtype: str) -> list[float]:
    """The values as the wire stores them (float32 or float16), as exact doubles."""
    fmt = DTYPES[dtype][1]
    return [struct.unpack(fmt, struct.pack(fmt, v))[0] for v in values]


def unit_vector(seed: int, dim: int, scale: float = 1.0) -> list[float]:
    """A random direction from integer-exact arithmetic, identical on every platform."""
    rng = random.Random(seed)
    raw = [rng.random() - 0.5 for _ in range(dim)]
    norm = math.sqrt(math.fsum(x * x for x in raw))
    return [scale * x / norm for x in raw]


# -- the vectors -------------------------------------------------------------------------


def ok(
    name: str, description: str, model_id: str, values: list[float], dtype: str
) -> dict[str, Any]:
    wire = rounded(values, dtype)
    payload = pack(wire, model_id, dtype)
    return {
        "name": name,
        "description": description,
        "model_id": model_id,
        "dim": len(wire),
        "dtype": dtype,
        "hex": payload.hex(),
        "text": text(payload),
        "expect": "ok",
        "vector": wire,
    }


def bad(
    name: str,
    description: str,
    code: str,
    *,
    payload: bytes | None = None,
    text_form: str | None = None,
    model_id: str = DEMO_ID,
    dim: int = 4,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "description": description}
    entry.update(model_id=model_id, dim=dim)
    if payload is not None:
        entry.update(form="binary", hex=payload.hex())
    else:
        entry.update(form="text", text=text_form)
    mismatch = code in ("model_mismatch", "dimension")
    entry.update(
        expect="error",
        code=code,
        error_class="ModelMismatchError" if mismatch else "InvalidFeatureError",
    )
    return entry


def build_vectors() -> list[dict[str, Any]]:
    demo = [0.5, -0.5, 0.5, -0.5]
    vectors = [
        ok("f32-demo", "the worked example of docs/wire-format.md", DEMO_ID, demo, "float32"),
        ok("f16-demo", "the same vector in float16", DEMO_ID, demo, "float16"),
        ok("f32-dim1", "the smallest dimension", "m", [-1.0], "float32"),
        ok("f32-128", "an FFEM-AM feature", MAIN_ID, unit_vector(1, 128), "float32"),
        ok("f16-128", "an FFEM-AM feature in float16", MAIN_ID, unit_vector(2, 128), "float16"),
        ok("f32-512-long-id", "a 64-character model id", LONG_ID, unit_vector(3, 512), "float32"),
        ok(
            "f16-max-dim",
            f"the largest dimension, {MAX_DIM}",
            "big",
            unit_vector(4, MAX_DIM),
            "float16",
        ),
        ok(
            "f32-norm-1.005",
            "norm 1.005 is inside 1 ± 0.01",
            DEMO_ID,
            unit_vector(5, 4, 1.005),
            "float32",
        ),
        ok(
            "f32-norm-0.995",
            "norm 0.995 is inside 1 ± 0.01",
            DEMO_ID,
            unit_vector(6, 4, 0.995),
            "float32",
        ),
        ok(
            "f16-subnormal",
            "float16 subnormals and a negative zero",
            "sub",
            [1e-6, -3e-7, -0.0, 0.6, 0.8, 2e-5, 0.0, -5.96e-8],
            "float16",
        ),
    ]

    good = pack(demo, DEMO_ID)
    good_text = text(good)
    zero = [0.0] * 4
    nan = struct.unpack("<f", bytes.fromhex("0000c07f"))[0]
    inf = math.inf
    errors = [
        bad("empty", "no bytes at all", "empty", payload=b""),
        bad(
            "oversized",
            f"{MAX_PAYLOAD_BYTES + 1} bytes, one over the cap, refused before parsing",
            "oversized",
            payload=MAGIC + bytes(MAX_PAYLOAD_BYTES - 3),
        ),
        bad("truncated-3", "three bytes", "truncated", payload=b"FID"),
        bad(
            "truncated-header",
            "8 bytes: one short of the fixed header",
            "truncated",
            payload=good[:8],
        ),
        bad(
            "truncated-body",
            "a valid payload missing its last byte",
            "truncated",
            payload=good[:-1],
        ),
        bad(
            "truncated-id",
            "the header promises a model id that is cut off",
            "truncated",
            payload=good[:12],
        ),
        bad("magic", "magic FIDW", "magic", payload=pack(demo, DEMO_ID, magic=b"FIDW")),
        bad(
            "magic-json",
            "a JSON list of floats sent as bytes",
            "magic",
            payload=b"[0.5, -0.5, 0.5, -0.5]",
        ),
        bad("version-0", "version 0", "version", payload=pack(demo, DEMO_ID, version=0)),
        bad(
            "version-2",
            "version 2, from a newer client",
            "version",
            payload=pack(demo, DEMO_ID, version=2),
        ),
        bad("dtype-0", "dtype code 0", "dtype", payload=pack(demo, DEMO_ID, dtype_code=0)),
        bad("dtype-3", "dtype code 3", "dtype", payload=pack(demo, DEMO_ID, dtype_code=3)),
        bad("model-id-empty", "model id length 0", "model_id", payload=pack(demo, "")),
        bad("model-id-65", "a 65-byte model id", "model_id", payload=pack(demo, "x" * 65)),
        bad("model-id-space", "a space in the model id", "model_id", payload=pack(demo, "demo 4")),
        bad(
            "model-id-utf8", "a non-ASCII model id", "model_id", payload=pack(demo, "démo".encode())
        ),
        bad(
            "model-id-nul",
            "a NUL byte in the model id",
            "model_id",
            payload=pack(demo, b"demo\x00"),
        ),
        bad(
            "trailing-byte", "one byte after the checksum", "trailing_bytes", payload=good + b"\x00"
        ),
        bad("trailing-payload", "two payloads back to back", "trailing_bytes", payload=good + good),
        bad(
            "checksum-element",
            "one bit flipped in an element (0.5 becomes 0.50000006)",
            "checksum",
            payload=good[:15] + bytes([good[15] ^ 0x01]) + good[16:],
        ),
        bad(
            "checksum-field",
            "one bit flipped in the CRC",
            "checksum",
            payload=good[:-1] + bytes([good[-1] ^ 0x80]),
        ),
        bad(
            "checksum-big-endian",
            "the CRC written big-endian",
            "checksum",
            payload=good[:-4] + good[-4:][::-1],
        ),
        bad(
            "model-mismatch",
            "a valid payload of another model",
            "model_mismatch",
            payload=pack(demo, "other-model"),
        ),
        bad(
            "dimension",
            "a valid payload of this model id but 8 elements",
            "dimension",
            payload=pack(unit_vector(7, 8), DEMO_ID),
        ),
        bad(
            "nan",
            "a NaN element, correct CRC",
            "non_finite",
            payload=pack([0.5, nan, 0.5, 0.5], DEMO_ID),
        ),
        bad(
            "inf-f16",
            "+Inf in float16",
            "non_finite",
            payload=pack([inf, 0.0, 0.0, 0.0], DEMO_ID, "float16"),
        ),
        bad("-inf", "-Inf in float32", "non_finite", payload=pack([0.0, -inf, 0.0, 0.0], DEMO_ID)),
        bad(
            "zero-vector",
            "the zero vector with a correct CRC: distance 1.0 from every template, a master key",
            "norm",
            payload=pack(zero, DEMO_ID),
        ),
        bad(
            "zero-vector-f16",
            "the zero vector in float16",
            "norm",
            payload=pack(zero, DEMO_ID, "float16"),
        ),
        bad(
            "norm-2",
            "an unnormalized vector, norm 2",
            "norm",
            payload=pack([1.0, -1.0, 1.0, -1.0], DEMO_ID),
        ),
        bad(
            "norm-0.98",
            "norm 0.98, outside 1 ± 0.01",
            "norm",
            payload=pack(unit_vector(8, 4, 0.98), DEMO_ID),
        ),
        bad(
            "norm-huge",
            "finite elements whose squared norm overflows float32",
            "norm",
            payload=pack([1e30, 1e30, 0.0, 0.0], DEMO_ID),
        ),
    ]

    # Text-only faults; every binary fault above gives the same code through the text form.
    if len(good_text) % 4 not in (2, 3):  # the non-canonical fault below relies on it
        raise RuntimeError(f"the demo payload's text length {len(good_text)} has no spare bits")
    last = BASE64URL.index(good_text[-1])
    url_char = next(c for c in good_text if c in "-_")
    errors += [
        bad("text-empty", "an empty string", "empty", text_form=""),
        bad(
            "text-oversized",
            f"{MAX_TEXT_CHARS + 1} characters, one over the cap",
            "oversized",
            text_form="A" * (MAX_TEXT_CHARS + 1),
        ),
        bad("text-padding", "'=' padding", "base64", text_form=good_text + "=="),
        bad(
            "text-standard-alphabet",
            "'+' or '/' of standard base64",
            "base64",
            text_form=good_text.replace(url_char, "+" if url_char == "-" else "/", 1),
        ),
        bad(
            "text-newline",
            "a line break in the middle",
            "base64",
            text_form=good_text[:8] + "\n" + good_text[8:],
        ),
        bad("text-space", "a leading space", "base64", text_form=" " + good_text),
        bad("text-trailing-newline", "a trailing line break", "base64", text_form=good_text + "\n"),
        bad(
            "text-non-ascii",
            "a non-ASCII letter",
            "base64",
            text_form=good_text[:4] + "é" + good_text[5:],
        ),
        bad("text-dot", "a '.'", "base64", text_form=good_text[:4] + "." + good_text[5:]),
        bad(
            "text-length",
            "a length of 4k+1 characters",
            "base64",
            text_form=good_text[: len(good_text) - (len(good_text) - 1) % 4],
        ),
        bad(
            "text-non-canonical",
            "unused low bits set in the last character (lenient decoders accept it)",
            "base64",
            text_form=good_text[:-1] + BASE64URL[last | 1],
        ),
    ]
    return vectors + errors


def build() -> str:
    """The exact text of codec_vectors.json."""
    header = {
        "description": (
            "Conformance vectors of the faceid-sdk feature wire format (docs/wire-format.md). "
            "Decode each entry with a codec for (model_id, dim): 'ok' entries must give "
            "'vector' exactly (element-wise, as float32) from both 'hex' and 'text', and encoding "
            "'vector' with 'dtype' must give 'hex' and 'text' exactly; 'error' entries must fail "
            "with 'code' (form 'binary': bytes of 'hex'; form 'text': the string 'text'). Binary "
            "error entries give the same code when sent in text form."
        ),
        "generator": "tests/vectors/make_codec_vectors.py",
        "wire_version": VERSION,
        "max_dim": MAX_DIM,
        "max_model_id_length": MAX_MODEL_ID,
        "max_payload_bytes": MAX_PAYLOAD_BYTES,
        "max_text_chars": MAX_TEXT_CHARS,
        "norm_tolerance": NORM_TOLERANCE,
    }
    head = json.dumps(header, indent=1)[:-2]  # reopen the object to append the list
    rows = ",\n  ".join(json.dumps(v, ensure_ascii=True) for v in build_vectors())
    return f'{head},\n "vectors": [\n  {rows}\n ]\n}}\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    content = build()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != content:
            print(f"{OUTPUT} is stale: run {Path(__file__).name} to regenerate it", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(content, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(content)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
