"""atheris fuzz target for Matcher.load: index files are untrusted input.

    python fuzz/fuzz_index.py -max_total_time=20          # or -runs=20000

FAISS's deserializer trusts its input, so the Matcher verifies a manifest before FAISS
sees a byte. The first input byte picks a mode: the raw file, or the file with both
checksums recomputed (manifest SHA-256 and the FAISS section's SHA-256 inside it), so
that mutations reach the manifest parser, the layout walk and FAISS itself. Anything but
IndexFileError is a crash (and a memory error in FAISS kills the process, which libFuzzer
reports); a file that loads must be a consistent, searchable gallery.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["faceid_sdk"]):
    import numpy as np

    from faceid_sdk.errors import IndexFileError
    from faceid_sdk.matching import Matcher

DIM = 8
_PREAMBLE = struct.Struct("<8sII32s")
_PATH = os.path.join(tempfile.mkdtemp(prefix="fuzz-index-"), "input.index")


def seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for n in (0, 1, 5):
        matcher = Matcher(DIM)
        for i in range(n):
            v = rng.standard_normal(DIM).astype(np.float32)
            matcher.add(f"p{i}", v / np.linalg.norm(v))
        matcher.save(_PATH, metadata={"model_id": "fuzz", "sequence": n})
        with open(_PATH, "rb") as handle:
            data = handle.read()
        out += [b"\0" + data, b"\1" + data]
    return out


def fix_checksums(data: bytes) -> bytes:
    """Recompute both checksums so that the mutation itself is what the loader sees."""
    if len(data) < _PREAMBLE.size:
        return data
    magic, version, length, _ = _PREAMBLE.unpack_from(data)
    end = _PREAMBLE.size + length
    if end > len(data):
        return data
    manifest, payload = data[_PREAMBLE.size : end], data[end:]
    try:
        doc = json.loads(manifest)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        doc["faiss_size"] = len(payload)
        doc["faiss_sha256"] = hashlib.sha256(payload).hexdigest()
        manifest = json.dumps(doc).encode()
    digest = hashlib.sha256(manifest).digest()
    return _PREAMBLE.pack(magic, version, len(manifest), digest) + manifest + payload


def test_one_input(data: bytes) -> None:
    if not data:
        return
    body = fix_checksums(data[1:]) if data[0] % 2 else data[1:]
    with open(_PATH, "wb") as handle:
        handle.write(body)
    try:
        matcher = Matcher.load(_PATH)
    except IndexFileError:
        return
    # Loaded: it must be exactly what its manifest says, and searchable.
    if len(matcher) != sum(matcher.template_count(n) for n in matcher.identities):
        raise AssertionError("template count disagrees with the identities")
    query = np.zeros(matcher.dim, dtype=np.float32)
    query[0] = 1.0
    result = matcher.identify(query)
    if len(matcher) and result.identity not in matcher.identities:
        raise AssertionError(f"identify returned {result.identity!r}, not an identity")


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        corpus = tempfile.mkdtemp(prefix="fuzz-index-corpus-")
        for i, seed in enumerate(seeds()):
            with open(os.path.join(corpus, f"seed-{i}"), "wb") as handle:
                handle.write(seed)
        argv.append(corpus)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
