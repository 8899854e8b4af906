"""HTTP identify throughput and latency of the reference server, on loopback only.

Usage::

    python3 benchmarks/bench_http.py                       # 100k templates, flat, 20 s
    python3 benchmarks/bench_http.py --quick               # 10k templates, 5 s
    python3 benchmarks/bench_http.py --index hnsw --connections 16,64 --json http.json
    python3 benchmarks/bench_http.py --index hnsw --workers 1,2    # ratio 2 workers / 1

Steps (everything bounded in time; the server is stopped at the end):

1. A store of ``--n`` identities (one random unit template each) is created by the
   :class:`Enroller`, filled through its store and indexed by ``rebuild_index``, in
   ``--store`` (default: a file in ``/dev/shm`` named after N, reused when it already
   holds N identities; ``--fresh`` re-enrolls).
2. The server starts in a subprocess on ``127.0.0.1`` with rate limiting off:
   ``faceid-sdk serve --rate 0 --index flat|hnsw|ivf``.
3. A load generator posts ``/api/v1/identify`` with encoded noisy copies of enrolled
   templates: ``wrk`` (Debian package ``wrk``) with a Lua script when it is installed,
   else an asyncio ``httpx`` client (slower: it competes with the server for the CPU).
   Each run lasts ``--duration`` seconds and stops by itself; wrk also stops after
   ``--max-requests``.

It prints requests/s, p50/p99 latency and the share of non-200 answers per concurrency.
The generator shares the machine with the server: on 2 cores, wrk takes part of one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faceid_sdk._codec import FeatureCodec  # noqa: E402
from faceid_sdk._enroll import Enroller, rebuild_index  # noqa: E402
from faceid_sdk._store import SQLiteStore  # noqa: E402

DIM = 128
MODEL_ID = "bench-http-128"
PATH = "/api/v1/identify"

LUA = r"""
local bodies = {}
local count, max_requests = 0, tonumber(os.getenv("BENCH_MAX_REQUESTS") or "0")
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
response = function(status, headers, body)
  count = count + 1
  if max_requests > 0 and count >= max_requests then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  io.write(string.format(
    "JSON:{\"requests\":%d,\"duration_us\":%d,\"non2xx\":%d,\"errors\":%d," ..
    "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d}\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def prepare_store(path: Path, n: int, fresh: bool) -> np.ndarray:
    """Enroll *n* identities into *path* (reused if complete); return the templates."""
    gallery = unit_rows(np.random.default_rng(0), n)
    if path.exists() and not fresh:
        with Enroller.open(path) as enroller:
            if len(enroller) == n:
                print(f"reusing {path} ({n} identities)", flush=True)
                return gallery
        print(f"{path} holds another gallery: re-enrolling", flush=True)
    for suffix in ("", "-wal", "-shm", ".idx", ".index"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    start = time.perf_counter()
    # Create the store through the Enroller, then fill it through the store the Enroller
    # writes to and rebuild the index file as `faceid-sdk rebuild-index` does: the same
    # files as N calls to enroll(), without N duplicate-check searches (minutes at 100k).
    Enroller(path, MODEL_ID, DIM).close()
    store = SQLiteStore(path, model_id=MODEL_ID, dim=DIM)
    try:
        for i in range(n):
            store.add(f"p{i}", gallery[i : i + 1])
            if (i + 1) % 20_000 == 0:
                print(f"  stored {i + 1}/{n}", flush=True)
    finally:
        store.close()
    rebuild_index(path)
    print(f"enrolled {n} identities into {path} in {time.perf_counter() - start:.0f} s",
          flush=True)
    return gallery


def request_bodies(gallery: np.ndarray, count: int, noise: float) -> list[str]:
    rng = np.random.default_rng(1)
    picks = gallery[rng.choice(len(gallery), size=count, replace=False)]
    jitter = rng.standard_normal(picks.shape).astype(np.float32) * (noise / np.sqrt(DIM))
    queries = picks + jitter
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    codec = FeatureCodec(MODEL_ID, DIM)
    return [json.dumps({"features": codec.encode_text(q)}) for q in queries]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(store: Path, port: int, index: str, log: Path,
                 workers: int = 1) -> subprocess.Popen[bytes]:
    exe = shutil.which("faceid-sdk")
    cmd = ([exe] if exe else [sys.executable, "-m", "faceid_sdk"]) + [
        "serve", "--store", str(store), "--host", "127.0.0.1", "--port", str(port),
        "--rate", "0", "--log-level", "warning", "--index", index, "--workers", str(workers),
    ]
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server did not start within 600 s; see {log}")


def run_wrk(port: int, bodies: Path, connections: int, duration: float,
            max_requests: int, threads: int) -> dict[str, Any]:
    script = bodies.with_suffix(".lua")
    script.write_text(LUA)
    env = {**os.environ, "BENCH_BODIES": str(bodies), "BENCH_MAX_REQUESTS": str(max_requests)}
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
           "--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}{PATH}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60,
                         check=True).stdout
    stats = [json.loads(m) for m in re.findall(r"^JSON:(.*)$", out, flags=re.M)]
    if not stats:
        raise SystemExit(f"wrk printed no statistics:\n{out}")
    s = stats[0]
    seconds = s["duration_us"] / 1e6
    return {"requests": s["requests"], "seconds": seconds, "rps": s["requests"] / seconds,
            "p50_ms": s["p50_us"] / 1e3, "p90_ms": s["p90_us"] / 1e3, "p99_ms": s["p99_us"] / 1e3,
            "max_ms": s["max_us"] / 1e3, "non_2xx": s["non2xx"], "errors": s["errors"]}


async def run_httpx(port: int, bodies: list[str], connections: int, duration: float,
                    max_requests: int) -> dict[str, Any]:
    import httpx

    url = f"http://127.0.0.1:{port}{PATH}"
    latencies: list[float] = []
    bad = errors = 0
    stop = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=5.0) as client:
        async def worker(offset: int) -> None:
            nonlocal bad, errors
            i = offset
            while time.perf_counter() < stop and len(latencies) < max_requests:
                start = time.perf_counter()
                try:
                    response = await client.post(
                        url, content=bodies[i % len(bodies)],
                        headers={"Content-Type": "application/json"})
                    bad += response.status_code != 200
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - start)
                i += connections
        began = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in range(connections)))
        seconds = time.perf_counter() - began
    lat = np.array(latencies) * 1e3
    return {"requests": len(lat), "seconds": seconds, "rps": len(lat) / seconds,
            "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
            "non_2xx": bad, "errors": errors}


def serve_and_load(store: Path, args: argparse.Namespace, client: str, bodies: list[str],
                   body_file: Path, workers: int, log: Path) -> list[dict[str, Any]]:
    """Start ``faceid-sdk serve --workers W``, load it at each concurrency, stop it."""
    import httpx

    rows: list[dict[str, Any]] = []
    port = free_port()
    started = time.perf_counter()
    proc = start_server(store, port, args.index, log, workers)
    try:
        # Warm up every worker (each builds its own index: minutes for HNSW at 1M), one
        # fresh connection per request so that the kernel spreads them; check an answer.
        for body in bodies[: 8 * workers]:
            answer = httpx.post(f"http://127.0.0.1:{port}{PATH}", content=body,
                                headers={"Content-Type": "application/json"}, timeout=900)
            if answer.status_code != 200:
                raise SystemExit(f"identify failed ({answer.status_code}); see {log}")
        print(f"\nserver ({args.index}, {workers} worker(s)) answering on 127.0.0.1:{port} "
              f"after {time.perf_counter() - started:.1f} s; client {client}", flush=True)
        print(f"sample answer {answer.status_code}: {answer.text[:160]}", flush=True)
        print(f"{'conns':>6} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} "
              f"{'p99 ms':>8} {'max ms':>8} {'non-200':>8}", flush=True)
        for conns in [int(c) for c in args.connections.split(",")]:
            if client == "wrk":
                r = run_wrk(port, body_file, conns, args.duration, args.max_requests,
                            args.wrk_threads)
            else:
                r = asyncio.run(run_httpx(port, bodies, conns, args.duration,
                                          args.max_requests))
            r["connections"], r["workers"] = conns, workers
            rows.append(r)
            print(f"{conns:>6} {r['requests']:>9} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} "
                  f"{r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.1f} "
                  f"{r['non_2xx'] + r['errors']:>8}", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="enrolled templates (100000)")
    parser.add_argument("--index", choices=("flat", "hnsw", "ivf"), default="flat")
    parser.add_argument("--workers", default="1",
                        help="comma-separated server process counts, each measured in turn "
                        "(the first is the baseline of the ratios; default 1)")
    parser.add_argument("--connections", default="8,32,64",
                        help="comma-separated concurrent connections (default %(default)s)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run (20)")
    parser.add_argument("--max-requests", type=int, default=200_000,
                        help="stop a run after this many requests (200000)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument("--noise", type=float, default=0.4, help="query noise norm (0.4)")
    parser.add_argument("--store", type=Path, help="store to (re)use (default: in /dev/shm)")
    parser.add_argument("--fresh", action="store_true", help="re-enroll even if the store exists")
    parser.add_argument("--quick", action="store_true", help="N = 10000, 5 s per run")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.duration = 10_000, 5.0
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "httpx"
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    store = args.store or shm / f"faceid-bench-http-{args.n}.db"
    gallery = prepare_store(store, args.n, args.fresh)
    env = {"n": args.n, "index": args.index, "client": client, "cpus": os.cpu_count(),
           "python": platform.python_version(), "loadavg_start": os.getloadavg()}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bodies = request_bodies(gallery, min(2000, args.n), args.noise)
        body_file = Path(tmp) / "bodies.txt"
        body_file.write_text("\n".join(bodies) + "\n")
        for workers in [int(w) for w in args.workers.split(",")]:
            rows += serve_and_load(store, args, client, bodies, body_file, workers,
                                   Path(tmp) / f"server-{workers}.log")
    base = {r["connections"]: r["rps"] for r in rows if r["workers"] == rows[0]["workers"]}
    if len({r["workers"] for r in rows}) > 1:
        print(f"\nreq/s against {rows[0]['workers']} worker(s) at the same concurrency:")
        for r in rows:
            print(f"  workers={r['workers']} conns={r['connections']}: "
                  f"{r['rps'] / base[r['connections']]:.2f}x")
    env["loadavg_end"] = os.getloadavg()
    print(f"load average start {env['loadavg_start']}, end {env['loadavg_end']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"env": env, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
