#!/usr/bin/env bash
# Installs ONNX Runtime's Node package (CPU library inside) into a cache folder, for tests and peer benchmarks
# only: tailor never needs it at run time. Prints the NODE_PATH to use. Never fails the caller: without the npm
# registry, the ONNX Runtime checks say they were skipped.
#   bash scripts/ort.sh            -> installs if missing, prints e.g. /root/.cache/tailor/ort/node_modules
set -uo pipefail
dir=${TAILOR_ORT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tailor/ort}
if [ ! -f "$dir/node_modules/onnxruntime-node/package.json" ]; then
  if ! command -v npm >/dev/null; then
    echo "tailor: npm is missing; ONNX Runtime checks will be skipped" >&2
    exit 0
  fi
  mkdir -p "$dir"
  # --ignore-scripts: the package's install script only fetches a CUDA provider from outside the registry.
  if ! npm install --prefix "$dir" --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30.0 >"$dir/npm.log" 2>&1; then
    echo "tailor: could not install onnxruntime-node (see $dir/npm.log); ONNX Runtime checks will be skipped" >&2
    exit 0
  fi
fi
echo "$dir/node_modules"
