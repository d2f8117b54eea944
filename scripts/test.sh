#!/usr/bin/env bash
# Installs missing dependencies, builds, and runs the whole test suite through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
cd "${BUILD_DIR:-build}"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} ctest --output-on-failure
