"""atheris fuzz target for FeatureCodec.decode / decode_text (the server's first parser).

    python fuzz/fuzz_codec.py -max_total_time=20          # or -runs=50000
    python fuzz/fuzz_codec.py fuzz/corpus-codec -runs=0   # replay a corpus

The first input byte picks a mode: raw bytes (what a client could send), bytes whose
CRC-32 is fixed up (so mutations get past the checksum and reach the value checks), or
text for decode_text. Anything but InvalidFeatureError is a crash; a payload that
decodes must be a finite, unit-norm vector of the codec's dimension that re-encodes
and decodes to itself.
"""

from __future__ import annotations

import struct
import sys
import zlib

import atheris

with atheris.instrument_imports(include=["faceid_sdk"]):
    import numpy as np

    from faceid_sdk._codec import FeatureCodec
    from faceid_sdk.errors import InvalidFeatureError

DIM = 16
CODEC = FeatureCodec("fuzz-model-16", DIM)
F16 = FeatureCodec("fuzz-model-16", DIM, dtype="float16")


def seeds() -> list[bytes]:
    """Valid payloads in each mode, to start the fuzzer in interesting places."""
    rng = np.random.default_rng(0)
    out = []
    for codec in (CODEC, F16):
        v = rng.standard_normal(DIM).astype(np.float32)
        payload = codec.encode(v / np.linalg.norm(v))
        out += [b"\0" + payload, b"\1" + payload, b"\2" + codec.encode_text(
            v / np.linalg.norm(v)).encode()]
    return out


def check(vector: np.ndarray) -> None:
    if vector.shape != (DIM,) or vector.dtype != np.float32:
        raise AssertionError(f"decoded shape/dtype {vector.shape} {vector.dtype}")
    if not np.isfinite(vector).all() or abs(float(np.linalg.norm(vector)) - 1) > 0.011:
        raise AssertionError("decoded a non-finite or non-unit vector")
    again = CODEC.decode(CODEC.encode(vector))
    if not np.array_equal(again, vector):
        raise AssertionError("float32 round trip changed the vector")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    try:
        if mode == 2:
            vector = CODEC.decode_text(body.decode("utf-8", "replace"))
        else:
            if mode == 1 and len(body) >= 4:
                body = body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))
            vector = CODEC.decode(body)
    except InvalidFeatureError:
        return
    check(vector)


def main() -> None:
    import os
    import tempfile

    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        corpus = tempfile.mkdtemp(prefix="fuzz-codec-")
        for i, seed in enumerate(seeds()):
            with open(os.path.join(corpus, f"seed-{i}"), "wb") as handle:
                handle.write(seed)
        argv.append(corpus)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
