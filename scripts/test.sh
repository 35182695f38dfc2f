#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on this machine: CPU tests always, GPU tests
# when CUDA is present, browser tests when headless Chromium can be installed (Debian, root).
#
#   bash scripts/test.sh            # extra arguments go to pytest, e.g. -k ply -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
bash scripts/install_browser.sh || echo "test: headless Chromium unavailable, browser tests will be skipped"
# gsplat's kernels: the persistent cache setup.sh built (TORCH_EXTENSIONS_DIR if set), never a fresh build.
export HF_HUB_OFFLINE=1
bash scripts/install_splat_transform.sh || echo "test: splat-transform unavailable (no npm?), its interoperability tests will be skipped"
exec .venv/bin/python -m pytest -q "$@"
