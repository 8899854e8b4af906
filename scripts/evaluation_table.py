"""Print docs/evaluation.md's tables from a shipped run: the model rows and its progress.

    python3 scripts/evaluation_table.py runs/online_v2

Reads RUN/evaluation.json (written by `python -m faceid_sdk.training.ship`) and
RUN/train.log (the held-out evaluations every 500 steps).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def model_rows(run: Path) -> list[str]:
    rows = json.loads((run / "evaluation.json").read_text())["rows"]
    out = ["| model | CelebA unseen verif. acc % | TAR@FAR 1e-3 % | LFW folds 4-5 acc % | thr. "
           "FAR 1e-3 / 1e-4 | TAR % at them (CelebA) | FAR at them (CelebA) | named / strangers "
           "named % at FAR 1e-4 thr. | at the paper's 0.5 |",
           "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        t = row["calibration"]["thresholds"]
        o = row["open_set_celeba"]
        out.append(
            f"| {row['name']} | {100 * row['celeba_unseen']['accuracy']:.1f} | "
            f"{100 * row['celeba_unseen']['tar_at_far_1e-3']:.1f} | "
            f"{100 * row['lfw_folds_4_5']['accuracy']:.1f} | "
            f"{t['far_1e-3']['threshold']:.3f} / {t['far_1e-4']['threshold']:.3f} | "
            f"{100 * t['far_1e-3']['check_tar']:.1f} / {100 * t['far_1e-4']['check_tar']:.1f} | "
            f"{t['far_1e-3']['check_far']:.1e} / {t['far_1e-4']['check_far']:.1e} | "
            f"{100 * o['far_1e-4']['named_correctly']:.1f} / "
            f"{100 * o['far_1e-4']['strangers_named']:.1f} | "
            f"{100 * o['paper_0.5']['named_correctly']:.1f} / "
            f"{100 * o['paper_0.5']['strangers_named']:.1f} |")
    return out


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
