"""Feature extraction speed: TensorFlow (the reference), ONNX Runtime and TF.js in Node.

Usage::

    python3 benchmarks/bench_extract.py                  # shipped model, batch 1 and 32
    python3 benchmarks/bench_extract.py --repeats 20 --json extract.json
    python3 benchmarks/bench_extract.py --backends onnx  # skip TF.js (needs Node)

Every backend embeds the same aligned 96x96 golden faces (``tests/golden/faces.npy``)
with the shipped weights; rows are the median milliseconds per face over ``--repeats``
runs at batch 1 and batch 32 (after a warm-up), faces per second, and the ratio against
TensorFlow measured in the same run (> 1: faster than TensorFlow). A sweep of ONNX
Runtime batch sizes and thread counts follows, since serving extraction (``faceid-sdk
embed``, enrollment from photos) runs there. The TF.js row runs the graph model in Node
with the wasm backend, the same code path as the browser client.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from faceid_adapters.parity import Golden, run_parity, time_per_face


def onnx_sweep(faces: np.ndarray, repeats: int) -> list[dict[str, Any]]:
    """ONNX Runtime at several batch sizes and intra-op thread counts."""
    from faceid_adapters.onnx import OnnxExtractor

    rows = []
    for threads in sorted({1, os.cpu_count() or 1}):
        extractor = OnnxExtractor(threads=threads)
        for batch in (1, 8, 32, 128):
            ms = time_per_face(extractor.embed_aligned, faces, batch, max(2, repeats // 2))
            rows.append({"threads": threads, "batch": batch, "ms_per_face": ms,
                         "faces_per_s": 1e3 / ms})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per case (>= 1)")
    parser.add_argument("--backends", default="onnx,tfjs",
                        help="besides TensorFlow: onnx, tfjs (default %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    backends = tuple(b for b in args.backends.split(",") if b)
    env = {"python": platform.python_version(), "cpus": os.cpu_count(),
           "loadavg_start": os.getloadavg(), "repeats": args.repeats}
    report = run_parity(backends=backends, repeats=args.repeats)
    assert report.reference_ms_per_face is not None  # timed: repeats > 0
    rows: list[dict[str, Any]] = [{"backend": "tensorflow",
                                   "ms_batch1": report.reference_ms_per_face[0],
                                   "ms_batch32": report.reference_ms_per_face[1]}]
    for result in report.results:
        if result.ms_per_face is not None:
            rows.append({"backend": result.backend, "ms_batch1": result.ms_per_face[0],
                         "ms_batch32": result.ms_per_face[1],
                         "max_abs_diff": result.max_abs_diff})
    base1, base32 = rows[0]["ms_batch1"], rows[0]["ms_batch32"]
    print(f"model {report.model_id}; {report.n_faces} golden faces; "
          f"load average {env['loadavg_start']}")
    print(f"{'backend':<14} {'ms/face b1':>10} {'ms/face b32':>11} {'faces/s b32':>11} "
          f"{'vs TF b1':>9} {'vs TF b32':>9}")
    for r in rows:
        r["faces_per_s_batch32"] = 1e3 / r["ms_batch32"]
        r["vs_tf_batch1"], r["vs_tf_batch32"] = base1 / r["ms_batch1"], base32 / r["ms_batch32"]
        print(f"{r['backend']:<14} {r['ms_batch1']:>10.2f} {r['ms_batch32']:>11.2f} "
              f"{r['faces_per_s_batch32']:>11.0f} {r['vs_tf_batch1']:>8.2f}x "
              f"{r['vs_tf_batch32']:>8.2f}x")
    sweep: list[dict[str, Any]] = []
    if "onnx" in backends:
        sweep = onnx_sweep(Golden.load().faces, args.repeats)
        print("\nONNX Runtime sweep")
        print(f"{'threads':>7} {'batch':>6} {'ms/face':>8} {'faces/s':>8}")
        for r in sweep:
            print(f"{r['threads']:>7} {r['batch']:>6} {r['ms_per_face']:>8.2f} "
                  f"{r['faces_per_s']:>8.0f}")
        best = max(sweep, key=lambda r: r["faces_per_s"])
        print(f"best: {best['faces_per_s']:.0f} faces/s (batch {best['batch']}, "
              f"{best['threads']} threads); the issue's target is 1,000")
    env["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"env": env, "model_id": report.model_id, "rows": rows,
                       "onnx_sweep": sweep}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
