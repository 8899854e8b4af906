"""Approximate matchers (HNSW, IVF) against the exact flat Matcher: recall@1 and speed.

Usage::

    python3 benchmarks/bench_scale.py                     # N = 10k, 100k, 1M; d = 128
    python3 benchmarks/bench_scale.py --quick             # N = 10k, 100k, fewer queries
    python3 benchmarks/bench_scale.py --sizes 1000000 --json scale.json --plot out.png

For each gallery size N: random unit-norm templates (identities of one template), and
queries that are noisy copies of gallery templates (Gaussian noise of Euclidean norm
``--noise``, 0.4 by default, renormalized: a genuine comparison a little under the 0.5
threshold), so that the true nearest template is known and recall is meaningful. The
exact flat :class:`Matcher` is the baseline, measured in the same run on the same data:

* ``recall@1``: share of queries whose reported template equals the flat Matcher's;
* ``agree``: share of queries with the same identity *and* the same accept/reject;
* ``1 query``: median and p99 latency of :meth:`identify` over the query set;
* ``batch``: seconds per query of :meth:`identify_batch` on ``--batch`` queries (best of
  a few runs);
* ``flat/this``: the flat Matcher's time divided by this backend's (> 1: faster).

HNSW is swept over ``ef_search`` and IVF over ``nprobe`` (search-time knobs, one build
each). Build time is the time to build the approximate index over the whole gallery.
A latency-vs-gallery-size plot (single query, default settings) goes to ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from bench_match import DIM, unit_rows  # the same galleries as the Matcher benchmark

from faceid_sdk.matching import Matcher
from faceid_sdk.matching.approx import ApproxMatcher

EF_SWEEP = (16, 32, 64, 128, 256, 512)
NPROBE_SWEEP = (4, 16, 64)
DEFAULT_EF = 64
DEFAULT_NPROBE = 16
PLOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "img",
                    "latency_vs_gallery.png")


def noisy_copies(rng: np.random.Generator, rows: np.ndarray, noise: float) -> np.ndarray:
    jitter = rng.standard_normal(rows.shape).astype(np.float32) * (noise / np.sqrt(DIM))
    out = rows + jitter
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def fill(matcher: Matcher, gallery: np.ndarray) -> float:
    """Add one identity per row; return the seconds of the last add (the ANN build)."""
    for i in range(len(gallery) - 1):
        matcher.add(f"p{i}", gallery[i])
    start = time.perf_counter()
    matcher.add(f"p{len(gallery) - 1}", gallery[-1])
    return time.perf_counter() - start


def singles(matcher: Matcher, queries: np.ndarray) -> tuple[float, float, list[Any]]:
    """Median and p99 seconds of identify() over *queries*, and the answers."""
    for q in queries[:5]:
        matcher.identify(q)
    times, answers = [], []
    for q in queries:
        start = time.perf_counter()
        answers.append(matcher.identify(q))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.percentile(times, 99)), answers


def batch_time(matcher: Matcher, queries: np.ndarray, repeats: int) -> float:
    matcher.identify_batch(queries)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matcher.identify_batch(queries)
        best = min(best, time.perf_counter() - start)
    return best / len(queries)


def bench_size(n: int, args: argparse.Namespace, rng: np.random.Generator) -> list[dict[str, Any]]:
    gallery = unit_rows(rng, n)
    picks = rng.choice(n, size=args.queries, replace=False)
    queries = noisy_copies(rng, gallery[picks], args.noise)
    batch = queries[: args.batch]
    rows: list[dict[str, Any]] = []

    flat = Matcher(DIM)
    fill(flat, gallery)
    f_med, f_p99, truth = singles(flat, queries)
    f_batch = batch_time(flat, batch, args.repeats)
    truth_ids = [t.template_id for t in truth]

    def record(backend: str, knob: str, build: float | None, med: float, p99: float,
               per_q: float, answers: list[Any]) -> None:
        # Compared with the flat answers to the same queries (milvus times a prefix).
        recall = float(np.mean([a.template_id == t for a, t in zip(answers,
                                                                      truth_ids[: len(answers)],
                                                                      strict=True)]))
        agree = float(np.mean([(a.identity, a.accepted) == (t.identity, t.accepted)
                               for a, t in zip(answers, truth[: len(answers)], strict=True)]))
        rows.append({
            "n": n, "backend": backend, "knob": knob, "build_s": build,
            "recall_at_1": recall, "agree": agree,
            "single_median_ms": med * 1e3, "single_p99_ms": p99 * 1e3,
            "batch_us_per_query": per_q * 1e6,
            "flat_over_this_single": f_med / med, "flat_over_this_batch": f_batch / per_q,
        })
        r = rows[-1]
        build_txt = "" if build is None else f"{build:.1f}"
        print(f"{n:>8} {backend:<5} {knob:<11} {build_txt:>8} {recall:>8.4f} {agree:>7.4f} "
              f"{r['single_median_ms']:>9.3f} {r['single_p99_ms']:>9.3f} "
              f"{r['batch_us_per_query']:>10.1f} {r['flat_over_this_single']:>9.1f}x "
              f"{r['flat_over_this_batch']:>8.1f}x", flush=True)

    record("flat", "exact", None, f_med, f_p99, f_batch, truth)

    if "hnsw" in args.backends:
        hnsw = ApproxMatcher(DIM, index="hnsw", exact_below=n, ef_search=DEFAULT_EF,
                             ef_construction=args.ef_construction)
        build = fill(hnsw, gallery)
        for ef in EF_SWEEP:
            hnsw.ef_search = ef
            med, p99, answers = singles(hnsw, queries)
            knob = f"ef={hnsw.ef_search}"
            if args.ef_construction != 80:
                knob += f" efC={args.ef_construction}"
            record("hnsw", knob, build, med, p99,
                   batch_time(hnsw, batch, args.repeats), answers)
        del hnsw

    if "ivf" in args.backends:
        ivf = ApproxMatcher(DIM, index="ivf", exact_below=n, nprobe=DEFAULT_NPROBE)
        build = fill(ivf, gallery)
        nlist = ivf._approx_inner.nlist
        for nprobe in NPROBE_SWEEP:
            ivf.nprobe = nprobe
            med, p99, answers = singles(ivf, queries)
            record("ivf", f"nprobe={nprobe}/{nlist}", build, med, p99,
                   batch_time(ivf, batch, args.repeats), answers)
        del ivf

    if "milvus" in args.backends:
        with tempfile.TemporaryDirectory(prefix="bench-milvus-") as folder:
            milvus = milvus_matcher(os.path.join(folder, "gallery.db"), gallery)
            build = milvus.pop("build")
            matcher = milvus.pop("matcher")
            # milvus-lite is slow per call: fewer single queries (same ones, a prefix).
            few = queries[: args.milvus_queries]
            med, p99, answers = singles(matcher, few)
            record("milvus", "lite FLAT", build, med, p99,
                   batch_time(matcher, batch, args.repeats), answers)
            matcher.close()
    return rows


def milvus_matcher(path: str, gallery: np.ndarray) -> dict[str, Any]:
    """A MilvusMatcher (milvus-lite, FLAT) holding *gallery*, one identity per row.

    Rows go in through the client in bulk (the Matcher API adds one identity per call,
    which would time round trips rather than the engine); searches use the public API.
    """
    from faceid_adapters.milvus import MilvusMatcher

    matcher = MilvusMatcher(path, DIM)
    start = time.perf_counter()
    for lo in range(0, len(gallery), 10_000):
        block = gallery[lo : lo + 10_000]
        matcher._client.insert(matcher._collection, [
            {"template_id": lo + i, "identity": f"p{lo + i}", "vector": row}
            for i, row in enumerate(block)
        ])
    return {"matcher": matcher, "build": time.perf_counter() - start}


def plot(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for backend, knob, label in (
        ("flat", "exact", "flat (exact)"),
        ("hnsw", f"ef={DEFAULT_EF}", f"HNSW ef={DEFAULT_EF}"),
        ("ivf", f"nprobe={DEFAULT_NPROBE}", f"IVF nprobe={DEFAULT_NPROBE}"),
    ):
        pts = sorted((r["n"], r["single_median_ms"], r["single_p99_ms"]) for r in rows
                     if r["backend"] == backend and r["knob"].split("/")[0] == knob)
        if not pts:
            continue
        xs, med, p99 = zip(*pts, strict=True)
        line = ax.plot(xs, med, marker="o", label=f"{label} median")[0]
        ax.plot(xs, p99, linestyle=":", color=line.get_color(), label=f"{label} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("templates in the gallery (d = 128)")
    ax.set_ylabel("identify() latency, one query (ms)")
    ax.set_title("Single-query latency vs gallery size (2-core VM)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    print(f"plot written to {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated gallery sizes (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=1000, help="noisy queries (default 1000)")
    parser.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    parser.add_argument("--noise", type=float, default=0.4,
                        help="Euclidean norm of the query noise (default 0.4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per batch")
    parser.add_argument("--backends", default="hnsw,ivf",
                        help="other backends to measure: hnsw, ivf, milvus (default %(default)s)")
    parser.add_argument("--ef-construction", type=int, default=80,
                        help="HNSW build beam width (default 80, ApproxMatcher's default)")
    parser.add_argument("--milvus-queries", type=int, default=100,
                        help="single queries timed on milvus (default 100)")
    parser.add_argument("--quick", action="store_true", help="N = 10k, 100k; 300 queries")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", default=PLOT,
                        help="latency plot (PNG; default docs/img/latency_vs_gallery.png; "
                        "'' for none)")
    parser.add_argument("--plot-from", nargs="+", metavar="JSON",
                        help="only redraw the plot from earlier --json files (merged)")
    args = parser.parse_args(argv)
    if args.plot_from:
        merged: list[dict[str, Any]] = []
        for path in args.plot_from:
            with open(path, encoding="utf-8") as handle:
                merged.extend(json.load(handle)["rows"])
        plot(merged, args.plot)
        return 0
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    if args.quick:
        args.queries, args.repeats = 300, 2
    args.batch = min(args.batch, args.queries)
    env = {
        "faiss": faiss.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "queries": args.queries, "noise": args.noise, "loadavg_start": os.getloadavg(),
    }
    print(f"d={DIM}  " + "  ".join(f"{k}={v}" for k, v in env.items()))
    header = (f"{'N':>8} {'back':<5} {'knob':<11} {'build s':>8} {'recall@1':>8} {'agree':>7} "
              f"{'1q med ms':>9} {'1q p99 ms':>9} {'batch us/q':>10} {'flat/1q':>10} "
              f"{'flat/bat':>9}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        rows.extend(bench_size(n, args, rng))
    env["loadavg_end"] = os.getloadavg()
    print(f"load average start {env['loadavg_start']}, end {env['loadavg_end']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"env": env, "dim": DIM, "batch": args.batch, "rows": rows}, handle,
                      indent=2)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
