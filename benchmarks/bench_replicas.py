"""Identify throughput and p99 with 1, 2 and 4 `serve` replicas on one PostgreSQL store.

Usage::

    python3 benchmarks/bench_replicas.py                    # N = 100k, replicas 1,2,4, 10 s
    python3 benchmarks/bench_replicas.py --quick            # N = 5k, 4 s per run
    python3 benchmarks/bench_replicas.py --store postgresql://... --json replicas.json

Steps (loopback only, every run bounded in time, every process stopped at the end):

1. A PostgreSQL server from Debian's binaries in a temporary folder (``tests/postgres.py``),
   unless ``--store`` names one; ``--n`` identities (one unit template each) imported in
   one transaction (``PostgresStore.add_many``).
2. For each replica count R: R ``faceid-sdk serve --store URL`` processes on their own
   ports (each builds its flat gallery from the store), loaded for ``--duration`` seconds
   by an asyncio httpx client spreading ``--connections`` over the replicas. The 1-replica
   row is the baseline of the ratios.
3. Write visibility: enroll a new identity through replica 1, then identify it through
   replica 2 at once, ``--lag-rounds`` times; the lag is from the enroll's answer to the
   first answer naming it (the Enroller applies other replicas' writes before answering,
   so the first identify should already see it).

On a 2-core machine the replicas, PostgreSQL and the load generator share the same cores:
read the ratios as what contention costs here, not as a cluster's scaling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_http import DIM, MODEL_ID, PATH, free_port, request_bodies, unit_rows  # noqa: E402

from faceid_sdk._codec import FeatureCodec  # noqa: E402
from faceid_sdk._enroll import Enroller  # noqa: E402
from faceid_sdk._store_pg import PostgresStore  # noqa: E402


def prepare(url: str, n: int) -> np.ndarray:
    gallery = unit_rows(np.random.default_rng(0), n)
    Enroller(url, MODEL_ID, DIM).close()
    store = PostgresStore(url, model_id=MODEL_ID, dim=DIM)
    try:
        if len(store) == n:
            return gallery
        start = time.perf_counter()
        for lo in range(0, n, 20_000):
            store.add_many([(f"p{i}", gallery[i]) for i in range(lo, min(n, lo + 20_000))])
        print(f"imported {n} identities in {time.perf_counter() - start:.1f} s", flush=True)
    finally:
        store.close()
    return gallery


def start(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "faceid_sdk", "serve", "--store", url, "--port", str(port),
         "--rate", "0", "--log-level", "warning"], stdout=handle, stderr=subprocess.STDOUT,
        cwd=ROOT)


def wait_healthy(ports: list[int], procs: list[subprocess.Popen[bytes]], log: Path) -> float:
    import httpx

    began = time.perf_counter()
    for port, proc in zip(ports, procs, strict=True):
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"a replica exited ({proc.returncode}); see {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - began > 600:
                raise SystemExit(f"replicas did not start within 600 s; see {log}")
            time.sleep(0.2)
    return time.perf_counter() - began


async def load(ports: list[int], bodies: list[str], connections: int,
               duration: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    bad = 0
    stop = time.perf_counter() + duration
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=10) for p in ports]

    async def worker(k: int) -> None:
        nonlocal bad
        client, i = clients[k % len(clients)], k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await client.post(PATH, content=bodies[i % len(bodies)],
                                  headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - t0)
            bad += r.status_code != 200
            i += connections

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    seconds = time.perf_counter() - began
    for client in clients:
        await client.aclose()
    lat = np.array(latencies) * 1e3
    return {"requests": len(lat), "rps": len(lat) / seconds,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "non_200": bad}


def visibility_lag(ports: list[int], rounds: int) -> dict[str, Any]:
    import httpx

    codec = FeatureCodec(MODEL_ID, DIM)
    rng = np.random.default_rng(99)
    lags, first_try = [], 0
    with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}/api/v1", timeout=10) as a, \
            httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}/api/v1", timeout=10) as b:
        for k in range(rounds):
            face = unit_rows(rng, 1)[0]
            text = codec.encode_text(face)
            name = f"lag-{os.getpid()}-{k}"
            assert a.post("/enroll", json={"identity": name, "features": [text]}).status_code == 201
            acked = time.perf_counter()
            tries = 0
            while True:
                tries += 1
                if b.post("/identify", json={"features": text}).json()["identity"] == name:
                    break
                if time.perf_counter() - acked > 10:
                    raise SystemExit("a write was not visible on the other replica within 10 s")
            lags.append((time.perf_counter() - acked) * 1e3)
            first_try += tries == 1
            a.delete(f"/identities/{name}")
    return {"rounds": rounds, "seen_on_first_request": first_try,
            "median_ms": float(np.median(lags)), "max_ms": float(np.max(lags))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--lag-rounds", type=int, default=20)
    parser.add_argument("--store", help="a PostgreSQL URL (default: a temporary server)")
    parser.add_argument("--quick", action="store_true", help="N = 5000, 4 s per run")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.duration, args.lag_rounds = 5000, 4.0, 5
    server = None
    if args.store is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from postgres import PostgresServer

        server = PostgresServer()
        url = server.new_database()
    else:
        url = args.store
    log = Path("/tmp") / f"bench-replicas-{os.getpid()}.log"
    rows: list[dict[str, Any]] = []
    try:
        gallery = prepare(url, args.n)
        bodies = request_bodies(gallery, min(2000, args.n), 0.4)
        lag: dict[str, Any] | None = None
        print(f"\nN = {args.n}, {args.connections} connections, {args.duration:g} s per run")
        print(f"{'replicas':>8} {'start s':>8} {'req/s':>8} {'ratio':>6} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'non-200':>8}")
        for count in [int(r) for r in args.replicas.split(",")]:
            ports = [free_port() for _ in range(count)]
            procs = [start(url, port, log) for port in ports]
            try:
                took = wait_healthy(ports, procs, log)
                asyncio.run(load(ports, bodies, args.connections, 1.0))  # warm up
                row = asyncio.run(load(ports, bodies, args.connections, args.duration))
                row.update(replicas=count, start_s=took)
                if count >= 2 and lag is None:
                    lag = visibility_lag(ports, args.lag_rounds)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            row["ratio"] = row["rps"] / rows[0]["rps"] if rows else 1.0
            rows.append(row)
            print(f"{count:>8} {took:>8.1f} {row['rps']:>8.0f} {row['ratio']:>6.2f} "
                  f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['non_200']:>8}", flush=True)
        if lag is not None:
            print(f"\nwrite visibility (enroll on replica 1, identify on replica 2): seen on the "
                  f"first request {lag['seen_on_first_request']}/{lag['rounds']}, lag median "
                  f"{lag['median_ms']:.1f} ms, max {lag['max_ms']:.1f} ms")
        if args.json:
            Path(args.json).write_text(json.dumps({"n": args.n, "rows": rows, "lag": lag},
                                                  indent=2))
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
