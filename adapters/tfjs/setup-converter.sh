#!/usr/bin/env bash
# Create (or repair) the TF.js converter environment .venv-tfjs at the repository root.
# Idempotent: re-running it on a good environment only checks it. Used at export time only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${FACEID_TFJS_VENV:-$root/.venv-tfjs}"
python="${PYTHON:-python3}"
export TF_CPP_MIN_LOG_LEVEL=3

if ! "$python" -c "import tensorflow" 2>/dev/null; then
  echo "setup-converter.sh: $python must have TensorFlow installed (pip install 'faceid-sdk[tensorflow]')" >&2
  exit 1
fi
stamp="$venv/.installed"
if [[ -f "$stamp" ]] && cmp -s "$stamp" "$here/requirements-converter.txt"; then
  echo "setup-converter.sh: $venv is up to date"
  exit 0
fi
# Reuse the project's TensorFlow instead of downloading another: the system site-packages,
# plus (through a .pth file) wherever $python finds TensorFlow, which may be another venv.
"$python" -m venv --system-site-packages "$venv"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$python" -c 'import os, tensorflow as tf; print(os.path.dirname(os.path.dirname(tf.__file__)))' \
  > "$site/faceid-tensorflow.pth"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  -r "$here/requirements-converter.txt" 2>&1 | grep -v "is ignored" || true
mkdir -p "$site/tensorflow_decision_forests"
echo '"""Empty stand-in: tensorflowjs imports it; the real package does not load on TF 2.21."""' \
  > "$site/tensorflow_decision_forests/__init__.py"
"$venv/bin/tensorflowjs_converter" --version 2>/dev/null | grep tensorflowjs
cp "$here/requirements-converter.txt" "$stamp"
