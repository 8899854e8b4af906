#!/usr/bin/env bash
# Ship a training run's best weights: held-out evaluation and calibration (model.json), the
# float16 weights, the ONNX export, the golden parity reference, the page's TF.js export, and
# a parity check of all three runtimes. Run from the repository root after training:
#
#   scripts/ship_model.sh runs/online_v1 [CACHE_DIR]
#
# CACHE_DIR holds celeba112.npz and lfw112.npz made by faceid_sdk.training.prepare with the
# shipping pipeline (default data-cache), and orl112.npz if ORL is to be measured too
# (python -m faceid_sdk.training.prepare --raw ../shared/data/orl CACHE_DIR/orl112.npz).
# The teacher and the data come from ../shared.
set -euo pipefail
run="${1:?usage: scripts/ship_model.sh RUN_DIR [CACHE_DIR]}"
cache="${2:-data-cache}"
bin=.venv/bin
shared="${FACEID_SHARED:-../shared}"
export TF_CPP_MIN_LOG_LEVEL=3
$bin/python -m faceid_sdk.training.ship "$run" --cache-dir "$cache" --write ${FACEID_PREVIOUS:+--previous "$FACEID_PREVIOUS"} \
  --teacher "$shared/models/face-reidentification-retail-0095/face-reidentification-retail-0095.xml" \
  --lfw-pairs "$shared/data/lfw-dev/pairs-folds-1-5.txt" > "$run/ship.log"
$bin/faceid-sdk export --format onnx --out faceid_sdk/models/ffem_am
rm -f tests/golden/reference-*.npy
$bin/faceid-sdk parity --write-reference
$bin/python clients/web/prepare.py
$bin/faceid-sdk parity
