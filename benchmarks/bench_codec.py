"""Benchmark FeatureCodec decode + validate against parsing a JSON list of floats.

Run: ``python3 benchmarks/bench_codec.py [--dim 128] [--json results.json]``

Every row is decode *and* validation (dimension, finiteness, unit norm), so the JSON
baseline does what a server would have to do with plain JSON: ``json.loads``, convert to
float32, then check shape, NaN/Inf and norm with NumPy. Ratios are measured in the same
run (JSON time / codec time; above 1 means the codec is faster). Timings are the best of
several repeats, which is the least noisy estimate on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Run from a checkout without installing: the script's directory, not the repository
# root, is what Python puts on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceid_sdk import FeatureCodec, InvalidFeatureError
from faceid_sdk.vectors import NORM_TOLERANCE

BATCH = 1000


def json_decode_one(text: str, dim: int) -> np.ndarray:
    """The baseline: a JSON list of floats, validated as thoroughly as the codec does."""
    vector = np.asarray(json.loads(text), dtype=np.float32)
    if vector.shape != (dim,):
        raise InvalidFeatureError(f"shape must be ({dim},) (got {vector.shape})", code="dimension")
    if not np.isfinite(vector).all():
        raise InvalidFeatureError("vector must be finite", code="non_finite")
    if abs(float(np.linalg.norm(vector)) - 1.0) > NORM_TOLERANCE:
        raise InvalidFeatureError("vector must be L2-normalized", code="norm")
    return vector


def json_decode_many(text: str, dim: int) -> np.ndarray:
    """The batch baseline: one JSON list of lists, validated with vectorized NumPy."""
    matrix = np.asarray(json.loads(text), dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise InvalidFeatureError(
            f"shape must be (n, {dim}) (got {matrix.shape})", code="dimension"
        )
    if not np.isfinite(matrix).all():
        raise InvalidFeatureError("vectors must be finite", code="non_finite")
    if (np.abs(np.linalg.norm(matrix, axis=1) - 1.0) > NORM_TOLERANCE).any():
        raise InvalidFeatureError("vectors must be L2-normalized", code="norm")
    return matrix


def best_seconds(func: Callable[[], Any], budget: float = 0.3, repeat: int = 5) -> float:
    """Best time of one call, with the loop count sized so each repeat takes about *budget*."""
    number, elapsed = 1, 0.0
    while elapsed < budget / 10:
        number *= 2
        elapsed = timeit.timeit(func, number=number)
    number = max(1, int(number * budget / max(elapsed, 1e-9)))
    return min(timeit.repeat(func, number=number, repeat=repeat)) / number


def run(dim: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((BATCH, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    codec = FeatureCodec(f"ffem-am-{dim}-3f2a9c1b0d4e", dim)
    one = rows[0]

    bin32 = [codec.encode(r) for r in rows]
    bin16 = [codec.encode(r, dtype="float16") for r in rows]
    txt32 = [codec.encode_text(r) for r in rows]
    txt16 = [codec.encode_text(r, dtype="float16") for r in rows]
    # repr-precision floats, what json.dumps(vector.tolist()) sends
    json_one = json.dumps(one.tolist())
    json_many = json.dumps(rows.tolist())

    cases: list[tuple[str, int, Callable[[], Any], Callable[[], Any]]] = [
        ("binary float32", len(bin32[0]), lambda: codec.decode(bin32[0]),
         lambda: codec.decode_many(bin32)),
        ("binary float16", len(bin16[0]), lambda: codec.decode(bin16[0]),
         lambda: codec.decode_many(bin16)),
        ("text float32", len(txt32[0]), lambda: codec.decode_text(txt32[0]),
         lambda: codec.decode_text_many(txt32)),
        ("text float16", len(txt16[0]), lambda: codec.decode_text(txt16[0]),
         lambda: codec.decode_text_many(txt16)),
        ("JSON list of floats", len(json_one), lambda: json_decode_one(json_one, dim),
         lambda: json_decode_many(json_many, dim)),
    ]  # fmt: skip

    results: list[dict[str, Any]] = []
    for name, size, single, batch in cases:
        results.append(
            {
                "form": name,
                "bytes_per_vector": size,
                "single_us": best_seconds(single) * 1e6,
                "batch_ms": best_seconds(batch) * 1e3,
            }
        )
    baseline = results[-1]
    for r in results:
        r["single_speedup_vs_json"] = baseline["single_us"] / r["single_us"]
        r["batch_speedup_vs_json"] = baseline["batch_ms"] / r["batch_ms"]
        r["batch_us_per_vector"] = r["batch_ms"] * 1e3 / BATCH
    return {
        "dim": dim,
        "batch": BATCH,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "results": results,
    }


def print_table(report: dict[str, Any]) -> None:
    dim, batch = report["dim"], report["batch"]
    print(f"FeatureCodec decode + validate, dim={dim}, batch={batch} "
          f"(Python {report['python']}, NumPy {report['numpy']})")  # fmt: skip
    header = (
        f"{'form':<21}{'bytes':>7}{'one (µs)':>11}{'vs JSON':>9}"
        f"{'batch (ms)':>12}{'µs/vector':>11}{'vs JSON':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in report["results"]:
        print(
            f"{r['form']:<21}{r['bytes_per_vector']:>7}{r['single_us']:>11.2f}"
            f"{r['single_speedup_vs_json']:>8.1f}x{r['batch_ms']:>12.2f}"
            f"{r['batch_us_per_vector']:>11.2f}{r['batch_speedup_vs_json']:>8.1f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=128, help="vector dimension (default 128)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save the results here")
    args = parser.parse_args(argv)
    report = run(args.dim)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
