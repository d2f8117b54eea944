#!/usr/bin/env bash
# The main job: the Fashion-MNIST compression recipe end to end. Installs what is missing, builds the `tailor`
# tool, then trains a ResNet-style baseline on Fashion-MNIST, prunes it (recovering accuracy by distillation
# from the baseline), quantizes it to int8 and to 4-bit weights, evaluates every variant on the 10,000 test
# images, profiles each on onednn-cpu and libtorch-cpu, and writes out/fashion-mnist/{variants/*.pt,
# manifest.json, report.html}. Re-running continues from the finished steps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target tailor_cli
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
"$BUILD_DIR/tailor" compress examples/recipes/fashion-mnist.yaml -o out/fashion-mnist "$@"
echo "open out/fashion-mnist/report.html in a browser (self-contained: no network, no scripts)"
