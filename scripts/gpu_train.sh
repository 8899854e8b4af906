#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (PyTorch there; no TensorFlow, no data).
#
# Here, first (about a minute; under 44 MiB so that it and the working tree fit the machine's
# 64 MiB; the teacher goes with it and labels fresh views on the GPU):
#   .venv/bin/python -m faceid_sdk.training.gpu pack runs/online_mix5 --out gpu-pack --max-per-person 130
# Then, through the device tool, carrying the pack:
#   run(command="bash scripts/gpu_train.sh", carry=["gpu-pack"], timeout_s=600)
# Back here, with the folder the tool copied $OUT to:
#   .venv/bin/python -m faceid_sdk.training.gpu import DIR/weights.npz runs/gpu_v1 --from runs/online_mix5
#   scripts/ship_model.sh runs/gpu_v1 data-cache/v3
#
# MINUTES (default 7) is the training budget; the learning-rate schedule spans it. Extra
# arguments go to faceid_sdk/training/torch_student.py (--batch, --lr, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:?OUT must name the folder the weights go to}"
pack="${PACK:-gpu-pack}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
PYTHONUNBUFFERED=1 python3 faceid_sdk/training/torch_student.py "$pack" --out "$out" \
  --minutes "${MINUTES:-7}" --snapshots 2 "$@" 2>&1 | tee "$out/train.log"
ls -la "$out"
