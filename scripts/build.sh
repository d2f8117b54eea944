#!/usr/bin/env bash
# Installs missing dependencies, then configures and builds tailor (with tests) in ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTAILOR_BUILD_TESTS=ON -DTAILOR_BUILD_EXAMPLES=ON "$@"
cmake --build "$BUILD_DIR" -j "$(nproc)"
