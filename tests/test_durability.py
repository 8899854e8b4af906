"""Acknowledged enrollments survive SIGKILL in the middle of a burst."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from faceid_sdk import Enroller, rebuild_index

from .conftest import DIM, MODEL_ID

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from faceid_sdk import Enroller

    def vector(i):
        v = np.random.default_rng(i).standard_normal({dim}).astype(np.float32)
        return v / np.linalg.norm(v)

    enroller = Enroller(sys.argv[1], {model_id!r}, {dim})
    i = 0
    while True:
        enroller.enroll(f"person-{{i}}", vector(i))
        print(f"ACK {{i}}", flush=True)
        i += 1
    """
).format(dim=DIM, model_id=MODEL_ID)


def vector(i: int) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [5, 60])
def test_sigkill_loses_no_acknowledged_enrollment(tmp_path, kill_after):
    """Every enrollment acknowledged before SIGKILL is found after reopening and after rebuild."""
    store = tmp_path / "faces.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store)], stdout=subprocess.PIPE, text=True
    )
    acked = []
    assert child.stdout is not None
    for line in child.stdout:
        acked.append(int(line.split()[1]))
        if len(acked) >= kill_after:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with Enroller(store, MODEL_ID, DIM) as enroller:
        assert enroller.index_status in {"missing", "stale"}
        enrolled = {r.identity for r in enroller.identities()}
        assert {f"person-{i}" for i in acked} <= enrolled
        for i in acked:
            result = enroller.matcher.identify(vector(i))
            assert result.identity == f"person-{i}" and result.accepted
    report = rebuild_index(store)
    assert report.previous == "ok"
    assert report.identities == len(enrolled) >= len(acked)
