#!/usr/bin/env bash
# Install PlayCanvas splat-transform (the converter behind SuperSplat) into .tools/ for the
# interoperability tests (tests/test_interop.py). Needs node + npm; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${SPLAT_TRANSFORM_VERSION:-2.7.1}"
if [[ -x .tools/node_modules/.bin/splat-transform ]]; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "splat-transform: npm not found" >&2; exit 1; }
npm install --silent --no-audit --no-fund --prefix .tools "@playcanvas/splat-transform@$version" >/dev/null
echo "splat-transform: $(.tools/node_modules/.bin/splat-transform --version 2>&1 | head -1) in .tools/"
