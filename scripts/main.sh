#!/usr/bin/env bash
# The main job (until compression recipes exist): capture ResNet-18, show its per-node costs, fold its
# batch norms with a pass pipeline, export the result as TorchScript, inspect the exported file, check that
# the backends agree on it and profile it on libtorch-cpu and onednn-cpu into a variant card.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
mkdir -p out
./build/tailor inspect resnet18 --input 1x3x224x224 | tail -n 8
./build/tailor convert resnet18 --input 1x3x224x224 --pipeline fold-batch-norm,remove-dropout,dce -o out/resnet18_folded.pt
./build/tailor inspect out/resnet18_folded.pt --input 1x3x224x224 | tail -n 1
./build/tailor profile out/resnet18_folded.pt --input 1x3x224x224 --check
./build/tailor profile out/resnet18_folded.pt --input 1x3x224x224 --backends libtorch-cpu,onednn-cpu \
  --threads "$OMP_NUM_THREADS" --batch 1,8 --max-seconds 5 --nodes 3 --card out/manifest.json
echo "exported: out/resnet18_folded.pt (loads in LibTorch and PyTorch with torch.jit.load)"
echo "variant card with latency profiles: out/manifest.json"
