"""Print docs/evaluation.md's tables from a shipped run: the model rows and its progress.

    .venv/bin/python scripts/evaluation_table.py runs/online_v2

Reads RUN/evaluation.json (written by `python -m faceid_sdk.training.ship`) and
RUN/train.log (the held-out evaluations every 500 steps).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from faceid_sdk.training.ship import orl_table, results_table


def model_rows(run: Path) -> list[str]:
    rows = json.loads((run / "evaluation.json").read_text())["rows"]
    return [*results_table(rows).splitlines(), "", *orl_table(rows).splitlines()]


def progress_rows(run: Path, batch: int = 64) -> list[str]:
    out = ["| step | samples | CelebA unseen acc | TAR@1e-3 | LFW folds 4-5 acc |",
           "|---|---|---|---|---|"]
    for line in (run / "train.log").read_text().splitlines():
        match = re.search(r"step (\d+) (?:held-out|\(warm start[^)]*\)): (\{.*\})", line)
        if match:
            step, metrics = int(match.group(1)), json.loads(match.group(2))
            out.append(f"| {step} | {step * batch:,} | {metrics['celeba_acc']:.3f} | "
                       f"{metrics['celeba_tar_1e-3']:.3f} | {metrics['lfw_acc']:.3f} |")
    return out


if __name__ == "__main__":
    run = Path(sys.argv[1])
    print("\n".join(model_rows(run)))
    print()
    print("\n".join(progress_rows(run)))
