"""clients/web/codec.js is byte-identical to FeatureCodec: the shared vectors, run under Node."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceid_sdk import FeatureCodec

ROOT = Path(__file__).resolve().parents[2]
CODEC_JS = ROOT / "clients" / "web" / "codec.js"
CONFORMANCE = Path(__file__).with_name("codec_conformance.mjs")
VECTORS = ROOT / "tests" / "vectors" / "codec_vectors.json"
NAMES = [v["name"] for v in json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]]
EXTRA = ["extra:crc32-check-value", "extra:encoder-refusals", "extra:round-trip-random"]

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not on PATH")


def _node(*args: str, stdin: str | None = None) -> Any:
    proc = subprocess.run(
        ["node", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def conformance() -> dict[str, dict[str, Any]]:
    """Node's verdict on every conformance vector, computed once."""
    result: dict[str, dict[str, Any]] = _node(str(CONFORMANCE), str(VECTORS))
    return result


@needs_node
@pytest.mark.parametrize("name", NAMES + EXTRA)
def test_codec_js_conformance(conformance: dict[str, dict[str, Any]], name: str) -> None:
    """codec.js encodes each valid vector to the exact bytes and text, refuses each invalid one
    with the same error code as Python."""
    assert name in conformance, f"codec_conformance.mjs did not report {name!r}"
    assert conformance[name]["ok"], conformance[name]["detail"]


ENCODE_JS = """
import { FeatureCodec } from %s;
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const out = JSON.parse(input).map(({ model_id, dim, dtype, vector }) =>
    new FeatureCodec(model_id, dim).encodeText(vector, { dtype }));
  process.stdout.write(JSON.stringify(out));
});
"""


@needs_node
def test_codec_js_matches_python_on_random_vectors() -> None:
    """On random unit vectors, and on float16 rounding ties and subnormals, codec.js writes the
    same text as FeatureCodec.encode_text."""
    rng = np.random.default_rng(5)
    cases = []
    for i in range(60):
        dim = int(rng.integers(1, 600))
        v = rng.normal(size=dim)
        v /= np.linalg.norm(v)
        if dim > 40:
            # Exact float16 ties (low 13 float32 bits = 0x1000), odd and even, and values in
            # float16's subnormal range: the cases where rounding implementations differ.
            bits = v.astype(np.float32).view(np.uint32)
            bits[:8] = (bits[:8] & ~np.uint32(0x1FFF)) | np.uint32(0x1000)
            bits[8:10] |= np.uint32(0x2000)
            v = bits.view(np.float32).astype(np.float64)
            v[10:14] = rng.uniform(-6e-5, 6e-5, 4)
            # Rescale the untouched elements so the vector stays unit-norm.
            rest = np.linalg.norm(v[14:])
            v[14:] *= np.sqrt(1.0 - np.sum(v[:14] ** 2)) / rest
        for dtype in ("float32", "float16"):
            cases.append({"model_id": f"m-{i}", "dim": dim, "dtype": dtype,
                          "vector": [float(x) for x in v]})
    texts = _node("--input-type=module", "-e", ENCODE_JS % json.dumps(CODEC_JS.as_uri()),
                  stdin=json.dumps(cases))
    for case, text in zip(cases, texts, strict=True):
        codec = FeatureCodec(case["model_id"], case["dim"])
        assert text == codec.encode_text(np.array(case["vector"]), dtype=case["dtype"]), case
