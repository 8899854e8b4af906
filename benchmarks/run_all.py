"""Every benchmark in one command, then the issue's targets against what was measured.

Usage::

    python3 benchmarks/run_all.py --quick        # ~10 min: 10k/100k galleries, 10k HTTP
    python3 benchmarks/run_all.py                # ~1 h: up to 1M templates, HTTP at 100k
    python3 benchmarks/run_all.py --only match,http --out /tmp/bench

Runs, in turn, each script of this folder (codec, match, scale, extract, http) with
``--json`` into ``--out`` (default ``benchmarks/results/latest``), streaming their tables
(each prints its own ratios against baselines measured in the same run), and finishes
with one summary: each target, the number that decides it and whether it is met. A
failing script is reported and the others still run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SUITES = ("codec", "match", "scale", "extract", "http")


def commands(quick: bool) -> dict[str, list[str]]:
    """Each suite's script arguments (``--json PATH`` is appended)."""
    http_quick = ["--n", "10000", "--duration", "5", "--connections", "8",
                  "--workers", "1,2", "--index", "flat"]
    http_full = ["--n", "100000", "--duration", "10", "--connections", "8,32",
                 "--workers", "1,2", "--index", "ivf"]
    return {
        "codec": ["bench_codec.py"],
        "match": ["bench_match.py", "--quick"] if quick else ["bench_match.py"],
        "scale": (["bench_scale.py", "--quick", "--plot", ""] if quick
                  else ["bench_scale.py", "--sizes", "10000,100000,1000000"]),
        "extract": ["bench_extract.py", "--repeats", "5" if quick else "20"],
        "http": ["bench_http.py", *(http_quick if quick else http_full)],
    }


def _load(out: Path, suite: str) -> Any:
    path = out / f"{suite}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _rows(doc: Any, **match: Any) -> list[dict[str, Any]]:
    if not doc:
        return []
    return [r for r in doc["rows"] if all(r.get(k) == v for k, v in match.items())]


def summary(out: Path) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every target whose numbers exist."""
    lines: list[tuple[str, str, str]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    codec = _load(out, "codec")
    if codec:
        binary = [r for r in codec["results"] if r["form"].startswith("binary")]
        us = min(r["single_us"] for r in binary)
        lines.append(("codec decode+validate of one vector < 10 us", f"{us:.1f} us (binary)",
                      verdict(us < 10)))
    match = _load(out, "match")
    for row in _rows(match, case="matcher, 1 query"):
        lines.append((f"matcher 1 query >= NumPy naive, N={row['n']:,}",
                      f"{row['naive_over_this']:.1f}x naive, {row['numpy_over_this']:.2f}x "
                      "best NumPy", verdict(row["naive_over_this"] >= 1)))
        if row["n"] >= 1_000_000:
            lines.append(("1 query at 1M within 1.5x of the memory scan",
                          f"{row['this_over_scan']:.2f}x", verdict(row["this_over_scan"] <= 1.5)))
    for row in match["rows"] if match else []:
        if str(row["case"]).startswith("matcher, batch"):
            lines.append((f"matcher batch >= 3x NumPy, N={row['n']:,}",
                          f"{row['numpy_over_this']:.2f}x GEMM, "
                          f"{row['naive_over_this']:.0f}x naive loop",
                          verdict(row["numpy_over_this"] >= 3)))
    scale = _load(out, "scale")
    if scale:
        biggest = max(r["n"] for r in scale["rows"])
        good = [r for r in scale["rows"] if r["n"] == biggest and r["backend"] == "hnsw"
                and r["recall_at_1"] >= 0.99]
        best = max(good, key=lambda r: r["flat_over_this_single"], default=None)
        text = ("no setting reached 0.99" if best is None else
                f"{best['knob']}: recall {best['recall_at_1']:.3f}, "
                f"{best['flat_over_this_single']:.0f}x flat")
        lines.append((f"HNSW recall@1 >= 0.99 at >= 10x flat, N={biggest:,}", text,
                      verdict(best is not None and best["flat_over_this_single"] >= 10)))
    extract = _load(out, "extract")
    if extract and extract.get("onnx_sweep"):
        best = max(extract["onnx_sweep"], key=lambda r: r["faces_per_s"])
        lines.append(("ONNX Runtime >= 1,000 faces/s in batches",
                      f"{best['faces_per_s']:.0f} faces/s (batch {best['batch']})",
                      verdict(best["faces_per_s"] >= 1000)))
    http = _load(out, "http")
    if http:
        n = http["env"]["n"]
        ok = [r for r in http["rows"] if r["p99_ms"] <= 25]
        best = max(ok or http["rows"], key=lambda r: r["rps"])
        lines.append((f"HTTP identify >= 2,000 req/s, p99 <= 25 ms, N={n:,}",
                      f"{best['rps']:.0f} req/s, p99 {best['p99_ms']:.1f} ms "
                      f"({best['workers']} workers, {best['connections']} connections)",
                      verdict(n >= 100_000 and best["rps"] >= 2000 and best["p99_ms"] <= 25)))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller galleries, shorter runs")
    parser.add_argument("--only", default=",".join(SUITES),
                        help=f"comma-separated suites among {', '.join(SUITES)}")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest",
                        help="folder for the JSON results (default benchmarks/results/latest)")
    args = parser.parse_args(argv)
    wanted = [s for s in args.only.split(",") if s]
    unknown = set(wanted) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites {sorted(unknown)}; choose among {', '.join(SUITES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    plan: dict[str, list[str]] = commands(args.quick)
    for suite in wanted:
        script, *rest = plan[suite]
        if suite == "http" and shutil.which("wrk") is None:
            print("\n== http: wrk is not installed (apt-get install wrk); using httpx, "
                  "which competes with the server for the cores", flush=True)
        cmd = [sys.executable, str(HERE / script), *rest, "--json", str(args.out / f"{suite}.json")]
        print(f"\n== {suite}: {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(suite)
        print(f"== {suite}: {time.perf_counter() - started:.0f} s", flush=True)
    print("\nTargets (issue 6; single-machine numbers, see docs/scaling.md):")
    for target, measured, verdict in summary(args.out):
        print(f"  {verdict:<8} {target:<52} {measured}")
    if failed:
        print(f"\nfailed suites: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
