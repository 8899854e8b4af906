"""The atheris fuzz targets (fuzz/) run clean for a bounded time, as CI runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


@pytest.mark.slow
# Minimum inputs: a floor that proves the fuzzer ran, far below what an idle machine does
# (the index target writes a file per input: ~400/s; the codec target ~40,000/s).
@pytest.mark.parametrize(("target", "seconds", "minimum"),
                         [("fuzz_codec.py", 8, 1000), ("fuzz_index.py", 8, 100)])
def test_fuzz_target_finds_nothing(target, seconds, minimum, tmp_path):
    """libFuzzer runs the target for a few seconds without a crash, leak or timeout."""
    pytest.importorskip("atheris")
    fuzzer = [sys.executable, str(ROOT / "fuzz" / target), f"-max_total_time={seconds}",
              "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/"]
    result = subprocess.run(
        # libFuzzer's RSS limit reads the peak RSS (ru_maxrss), which a child inherits across
        # exec from the process that spawned it: started straight from this pytest process
        # (2 GB after a TensorFlow export test) the fuzzer "ran out of memory" before its
        # first input. A small launcher process in between gives it a peak of its own.
        [sys.executable, "-c", _LAUNCHER, *fuzzer],
        capture_output=True, text=True, timeout=seconds + 60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    tail = result.stderr[-3000:]
    assert result.returncode == 0, tail
    runs = re.search(r"Done (\d+) runs", result.stderr)
    assert runs and int(runs.group(1)) > minimum, tail
    assert not list(tmp_path.glob("crash-*")), tail
    print(f"\n{target}: {runs.group(1)} inputs in {seconds} s, no crash")


def test_fuzzer_peak_memory_is_its_own(tmp_path):
    """The launcher isolates the fuzzer from this process's peak RSS (the CI failure)."""
    ballast = bytearray(600 * 2**20)  # make this process's peak RSS large
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    probe = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    direct = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    launched = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-c", probe],
                              capture_output=True, text=True)
    del ballast
    assert int(direct.stdout) > 500 * 1024, "ru_maxrss no longer inherited: launcher unneeded"
    assert int(launched.stdout) < 200 * 1024
