#!/usr/bin/env bash
# Create .venv and install splatgen into it (idempotent; safe to re-run).
#
#   bash scripts/setup.sh          # the application
#   bash scripts/setup.sh --dev    # plus the test tools (pytest, matplotlib, ruff), the mesh exporter's and the batch's (Ray) extras
#
# torch comes first, chosen for this machine:
#   - a machine with an NVIDIA GPU (nvidia-smi answers) gets the CUDA build its driver runs
#     (driver >= 580: PyPI's default, CUDA 13.0; 570-579: PyTorch's cu128 index; 525-569: cu126;
#     the table is in splatgen/gpu/driver.py), then an nvcc of torch's CUDA major (an installed
#     toolkit, else NVIDIA's pip packages nvidia-cuda-nvcc & co.), ninja, and gsplat's CUDA kernels
#     built once into ~/.cache/splatgen/torch_extensions (or $TORCH_EXTENSIONS_DIR), MAX_JOBS=$(nproc);
#   - otherwise a CPU wheel that pip can already see locally (a wheelhouse in PIP_FIND_LINKS) is used,
#     and failing that PyTorch's CPU index, so a laptop never downloads gigabytes of CUDA wheels.
# Set SPLATGEN_TORCH_SPEC (e.g. "torch==2.5.1") to pin another version, SPLATGEN_TORCH_INDEX to force a
# pip index for torch (e.g. https://download.pytorch.org/whl/cu128), PYTHON to pick the interpreter,
# SPLATGEN_SKIP_KERNELS=1 to skip the gsplat build (it then happens on the first GPU run).
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev,mesh,batch]"
python="${PYTHON:-python3}"
torch_spec="${SPLATGEN_TORCH_SPEC:-torch==2.13.0}"

# A GPU machine: nvidia-smi answers. driver.py prints "INDEX CUDA DRIVER GPU" (exit 3: driver too old, 4: no GPU).
gpu_machine=0
if command -v nvidia-smi >/dev/null 2>&1; then
  status=0
  choice=$("$python" splatgen/gpu/driver.py torch-index) || status=$?
  [[ $status == 3 ]] && exit 1 # its one line says to update the driver or use the CPU index
  [[ $status == 0 ]] && gpu_machine=1
fi

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
# pip's notes about unreadable extra index folders are noise; its exit status still stops the script.
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [[ $gpu_machine == 1 ]]; then
    read -r index cuda driver gpu <<<"$choice"
    index="${SPLATGEN_TORCH_INDEX:-$index}"
    echo "setup: NVIDIA driver $driver ($gpu): installing torch built for CUDA $cuda${index:+ from $index}"
    if [[ $index == pypi ]]; then
      "${pip[@]}" install "$torch_spec"
    else
      "${pip[@]}" install "$torch_spec" --index-url "$index"
    fi
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

if [[ $gpu_machine == 1 ]]; then
  # gsplat's kernels: an nvcc of torch's CUDA major (installed toolkit, else NVIDIA's pip packages), ninja, one build.
  cuda=$(.venv/bin/python -c "import torch; print(torch.version.cuda or '')")
  if [[ -n $cuda ]] && ! .venv/bin/python -c "import sys; from splatgen.gpu.toolkit import find_toolkit; \
      sys.exit(find_toolkit('$cuda')[0] is None)"; then
    mapfile -t nvcc_packages < <(.venv/bin/python -m splatgen.gpu nvcc-packages "$cuda")
    echo "setup: no nvcc of CUDA ${cuda%%.*} installed; installing ${nvcc_packages[*]}"
    quiet "${pip[@]}" install "${nvcc_packages[@]}"
  fi
  quiet "${pip[@]}" install ninja
  if [[ "${SPLATGEN_SKIP_KERNELS:-0}" != 1 ]]; then
    MAX_JOBS="${MAX_JOBS:-$(nproc)}" .venv/bin/python -m splatgen.gpu build || exit 1 # one line says why
  fi
fi
.venv/bin/python -c "import splatgen, torch; print(f'setup: splatgen {splatgen.__version__}, torch {torch.__version__}, CUDA {torch.cuda.is_available()}')"
