#!/usr/bin/env bash
# Create .venv and install splatgen into it (idempotent; safe to re-run).
#
#   bash scripts/setup.sh          # the application
#   bash scripts/setup.sh --dev    # plus the test tools (pytest, matplotlib) and the mesh exporter's extra
#
# torch comes first, chosen for this machine:
#   - a machine with an NVIDIA driver (nvidia-smi) gets PyPI's default CUDA build;
#   - otherwise a CPU wheel that pip can already see locally (a wheelhouse in PIP_FIND_LINKS) is used,
#     and failing that PyTorch's CPU index, so a laptop never downloads gigabytes of CUDA wheels.
# Set SPLATGEN_TORCH_SPEC (e.g. "torch==2.5.1") to pin another version, PYTHON to pick the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev,mesh]"
python="${PYTHON:-python3}"
torch_spec="${SPLATGEN_TORCH_SPEC:-torch==2.13.0}"

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
# pip's notes about unreadable extra index folders are noise; its exit status still stops the script.
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "setup: NVIDIA driver found, installing the CUDA build of torch"
    "${pip[@]}" install "$torch_spec"
  elif wheelhouse=$(mktemp -d) && "${pip[@]}" download --no-deps --only-binary=:all: -d "$wheelhouse" "$torch_spec" \
        --no-index 2>/dev/null; then
    echo "setup: no CUDA, installing the local CPU wheel of $torch_spec"
    quiet "${pip[@]}" install "$wheelhouse"/torch-*.whl
  else
    echo "setup: no CUDA, installing the CPU build of torch from PyTorch's CPU index"
    "${pip[@]}" install "$torch_spec" --index-url https://download.pytorch.org/whl/cpu \
      || "${pip[@]}" install "$torch_spec" --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi

quiet "${pip[@]}" install -e ".$extras"
.venv/bin/python -c "import splatgen, torch; print(f'setup: splatgen {splatgen.__version__}, torch {torch.__version__}, CUDA {torch.cuda.is_available()}')"
