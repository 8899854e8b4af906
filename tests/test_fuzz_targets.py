"""The atheris fuzz targets (fuzz/) run clean for a bounded time, as CI runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
# Minimum inputs: a floor that proves the fuzzer ran, far below what an idle machine does
# (the index target writes a file per input: ~400/s; the codec target ~40,000/s).
@pytest.mark.parametrize(("target", "seconds", "minimum"),
                         [("fuzz_codec.py", 8, 1000), ("fuzz_index.py", 8, 100)])
def test_fuzz_target_finds_nothing(target, seconds, minimum, tmp_path):
    """libFuzzer runs the target for a few seconds without a crash, leak or timeout."""
    pytest.importorskip("atheris")
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / target), f"-max_total_time={seconds}",
         "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=seconds + 60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    tail = result.stderr[-3000:]
    assert result.returncode == 0, tail
    runs = re.search(r"Done (\d+) runs", result.stderr)
    assert runs and int(runs.group(1)) > minimum, tail
    assert not list(tmp_path.glob("crash-*")), tail
    print(f"\n{target}: {runs.group(1)} inputs in {seconds} s, no crash")
