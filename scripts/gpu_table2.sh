#!/usr/bin/env bash
# The paper's Table 2 under the distillation recipe, on a lent GPU machine (PyTorch there).
#
# Here, first (CPU, ~2 min; ~5 MiB):
#   .venv/bin/python -m faceid_sdk.training.table2 pack --teacher TEACHER.xml \
#     --teacher-pca runs/online_v2/teacher_pca.npz --out gpu-table2 \
#     --data data-cache/v3/celeba112.npz=celeba/ --data data-cache/v3/glint112.npz=glint/ \
#     --data data-cache/v3/pins112.npz=pins/
# Then, through the device tool (with the training pack too if both fit: 64 MiB in all):
#   run(command="bash scripts/gpu_table2.sh", carry=["gpu-table2"], timeout_s=600)
# Back here:
#   .venv/bin/python -m faceid_sdk.training.table2 report DIR/table2.npz --pack gpu-table2
#
# Each architecture x seed trains from scratch for the same STEPS (default 800) of BATCH
# (default 256): the log gives img/s after the first run, so lower STEPS if 4 x 3 runs would
# not end within the command's 10 minutes. Extra arguments go to
# faceid_sdk/training/torch_student.py (--archs, --seeds, --lr, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:?OUT must name the folder the results go to}/table2"
mkdir -p "$out"
pack="${PACK:-gpu-table2}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
PYTHONUNBUFFERED=1 python3 faceid_sdk/training/torch_student.py "$pack" --out "$out" \
  --max-steps "${STEPS:-800}" --batch "${BATCH:-256}" "$@" 2>&1 | tee "$out/table2.log"
