#!/usr/bin/env bash
# Installs the Debian packages tailor needs, only those missing (idempotent). Needs root or sudo.
set -euo pipefail
PACKAGES=(
  cmake ninja-build g++ ccache pkg-config
  libtorch-dev libgloo-dev libdnnl-dev libeigen3-dev libfmt-dev nlohmann-json3-dev libcli11-dev libyaml-cpp-dev catch2 zlib1g-dev libxgboost-dev
  libonnx-dev libprotobuf-dev     # ONNX export (the ONNX library Debian's LibTorch links already)
  libgrpc++-dev protobuf-compiler-grpc  # serving: the Open Inference Protocol over gRPC
  python3-grpcio python3-grpc-tools     # an independent OIP client in the tests
  libopenblas0-openmp            # a real BLAS for LibTorch (the default reference BLAS is ~50x slower)
  python3-torch python3-torchvision python3-onnx  # test fixtures and peer comparisons only
  dataset-fashion-mnist
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "tailor: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# ONNX Runtime (npm's onnxruntime-node) for the ONNX round-trip tests and peer benchmarks; skipped with a
# message where Node.js or the npm registry is missing.
if ! command -v node >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm || true
fi
bash "$(dirname "$0")/ort.sh" >/dev/null
