"""The online trainer's producer: the teacher per face, in float32 and in OpenVINO's own choice
of precision, and the whole producer (views, face mixing, teacher) in images/s.

    python benchmarks/bench_teacher.py [--teacher XML] [--faces 256] [--threads 1]

The baseline is the teacher as the trainer compiles it (``face_models.openvino_cpu_config``:
float32, one inference at a time); the row after it compiles the same IR without the
precision hint, so OpenVINO picks (bfloat16 on CPUs with AMX or AVX-512 BF16); the last row is
``_online``'s producer loop for one batch of 64 at a time (``augment_views``, ``mix_views`` at
the recipe's 0.5, ``Teacher``), which must outrun the training step (``bench_train_step.py``)
for the step never to wait. One thread each, as in the trainer's producer process. Random
112x112 crops: the teacher's cost does not depend on what the face shows. Stop any training
first: the numbers are only comparable on idle cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TEACHER = (Path(__file__).resolve().parents[1] / ".." / "shared" / "models"
                   / "face-reidentification-retail-0095" / "face-reidentification-retail-0095.xml")


def _per_face_ms(model: Any, inputs: np.ndarray) -> float:
    model(inputs[:1])  # first call allocates
    t0 = time.perf_counter()
    for i in range(len(inputs)):
        model(inputs[i : i + 1])
    return (time.perf_counter() - t0) * 1e3 / len(inputs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER)
    ap.add_argument("--faces", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    if not args.teacher.exists():
        ap.error(f"no teacher at {args.teacher}: pass --teacher PATH/face-reidentification-"
                 "retail-0095.xml (../shared/models)")

    import openvino

    from faceid_sdk.face_models import openvino_cpu_config
    from faceid_sdk.training._online import Teacher, augment_views, mix_views, teacher_input

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (args.faces, 112, 112, 3), dtype=np.uint8)
    inputs = teacher_input(crops)
    core = openvino.Core()
    pinned = core.compile_model(str(args.teacher), "CPU", openvino_cpu_config(args.threads))
    unpinned = {key: value for key, value in openvino_cpu_config(args.threads).items()
                if key != "INFERENCE_PRECISION_HINT"}
    free = core.compile_model(str(args.teacher), "CPU", unpinned)
    picked = free.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    rows: list[dict[str, Any]] = []
    base = _per_face_ms(pinned, inputs)
    rows.append({"row": "teacher, float32 (as the trainer runs it)", "ms_per_face": base})
    rows.append({"row": f"teacher, OpenVINO's choice ({picked})",
                 "ms_per_face": _per_face_ms(free, inputs)})
    teacher = Teacher(args.teacher, args.threads)
    teacher(inputs[:1])
    batch, t0 = 64, time.perf_counter()
    for start in range(0, args.faces - batch + 1, batch):
        _, tin = mix_views(*augment_views(crops[start : start + batch], rng), 0.5, rng)
        teacher(tin)
    done = (args.faces // batch) * batch
    rows.append({"row": "producer: views + mixing + teacher (float32)",
                 "ms_per_face": (time.perf_counter() - t0) * 1e3 / done})

    print(f"{args.faces} faces, {args.threads} thread(s); baseline: the float32 teacher")
    print(f"{'':46s} {'ms/face':>8s} {'img/s':>7s} {'vs baseline':>12s}")
    for row in rows:
        row["images_per_s"] = 1e3 / row["ms_per_face"]
        row["vs_baseline"] = row["ms_per_face"] / base
        print(f"{row['row']:46s} {row['ms_per_face']:8.2f} {row['images_per_s']:7.1f} "
              f"{row['vs_baseline']:11.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
