"""The benchmark scripts still run, and run_all reads their JSON into the right verdicts.

Tiny sizes only: these check that the scripts work and agree with each other, never speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402


def run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(BENCH / script), *args], check=True,
                   capture_output=True, text=True, timeout=300)


def test_match_and_codec_benchmarks_feed_the_summary(tmp_path: Path) -> None:
    run("bench_match.py", "--sizes", "3000", "--batch", "40", "--repeats", "1",
        "--json", str(tmp_path / "match.json"))
    run("bench_codec.py", "--json", str(tmp_path / "codec.json"))
    match = json.loads((tmp_path / "match.json").read_text())
    single = next(r for r in match["rows"] if r["case"] == "matcher, 1 query")
    assert single["naive_over_this"] > 0 and single["this_over_scan"] > 0
    targets = {target: verdict for target, _, verdict in run_all.summary(tmp_path)}
    assert "codec decode+validate of one vector < 10 us" in targets
    assert "matcher 1 query >= NumPy naive, N=3,000" in targets
    assert "matcher batch >= 3x NumPy, N=3,000" in targets
    assert set(targets.values()) <= {"met", "NOT met"}


def test_scale_benchmark_measures_recall(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run("bench_scale.py", "--sizes", "3000", "--queries", "60", "--batch", "20",
        "--repeats", "1", "--backends", "hnsw", "--plot", "", "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert {r["backend"] for r in rows} == {"flat", "hnsw"}
    assert all(0.0 <= r["recall_at_1"] <= 1.0 for r in rows)
    assert next(r for r in rows if r["backend"] == "flat")["recall_at_1"] == 1.0


@pytest.mark.parametrize(("http", "verdict"), [
    ({"n": 100_000, "rows": [{"rps": 2100.0, "p99_ms": 9.0, "workers": 2, "connections": 8},
                             {"rps": 2500.0, "p99_ms": 60.0, "workers": 2, "connections": 32}]},
     "met"),
    ({"n": 100_000, "rows": [{"rps": 1900.0, "p99_ms": 9.0, "workers": 2, "connections": 8}]},
     "NOT met"),
    ({"n": 10_000, "rows": [{"rps": 5000.0, "p99_ms": 5.0, "workers": 2, "connections": 8}]},
     "NOT met"),
])
def test_http_target_needs_both_rate_and_tail_at_100k(tmp_path: Path, http, verdict) -> None:
    """A high rate with a long tail, or a small gallery, does not meet the HTTP target."""
    doc = {"env": {"n": http["n"]}, "rows": http["rows"]}
    (tmp_path / "http.json").write_text(json.dumps(doc))
    [(target, _, got)] = run_all.summary(tmp_path)
    assert target.startswith("HTTP identify") and got == verdict


def test_replica_benchmark_runs_on_real_postgres(tmp_path: Path, postgres_url: str) -> None:
    """Two replicas on one PostgreSQL store: throughput rows and a measured write lag."""
    out = tmp_path / "replicas.json"
    run("bench_replicas.py", "--store", postgres_url, "--n", "500", "--replicas", "1,2",
        "--duration", "1", "--lag-rounds", "3", "--connections", "4", "--json", str(out))
    result = json.loads(out.read_text())
    assert [r["replicas"] for r in result["rows"]] == [1, 2]
    assert all(r["requests"] > 0 and r["non_200"] == 0 for r in result["rows"])
    assert result["lag"]["rounds"] == 3 and result["lag"]["seen_on_first_request"] == 3


def test_train_step_benchmark_compares_the_two_trainers(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("torch")
    out = tmp_path / "train.json"
    run("bench_train_step.py", "--batch", "4", "--steps", "1", "--warmup", "1", "--threads",
        "1", "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["case"].split(" ")[0] for r in rows] == ["Keras", "PyTorch", "PyTorch"]
    assert rows[0]["vs_keras"] == 1.0 and all(r["img_per_s"] > 0 for r in rows)
