#!/bin/bash
# Architecture search benchmarks (docs/nas.md): latency tables of this machine (onednn-cpu, 1 thread), then
# the searched subnets against uniformly scaled networks and evolution against random search, then NetAdapt
# against uniform L1 channel pruning. `bash benchmarks/nas.sh [OUT]` after building; settings by environment.
set -euo pipefail
OUT=${1:-out/nas}
BUILD=${BUILD:-build}
LIMIT=${LIMIT:-12000}
VALIDATION=${VALIDATION:-2000}
EPOCHS=${EPOCHS:-3}
FINETUNE=${FINETUNE:-2}
EVALUATIONS=${EVALUATIONS:-20}
SEED=${SEED:-0}
mkdir -p "$OUT"
lscpu | grep -E 'Model name' > "$OUT/cpu.txt"; grep -o -w -E 'avx2|fma|avx512[a-z_]*|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ' >> "$OUT/cpu.txt"
"$BUILD/tailor" latency build --backend onednn-cpu --threads 1 --space fashion-resnet --count 400 --minutes 3 \
  -o "$OUT/table-fashion-resnet.json" 2> "$OUT/table-space.log"
"$BUILD/tailor" latency build --backend onednn-cpu --threads 1 --models fashion-resnet --models-input 1x1x28x28 \
  --count 200 --minutes 2 -o "$OUT/table-fashion-resnet-pruned.json" 2> "$OUT/table-pruned.log"
common=(--limit "$LIMIT" --validation "$VALIDATION" --epochs "$EPOCHS" --finetune "$FINETUNE" --seed "$SEED")
"$BUILD/benchmarks/bench_nas" search --table "$OUT/table-fashion-resnet.json" --evaluations "$EVALUATIONS" \
  "${common[@]}" 2> "$OUT/search.log" | tee "$OUT/search.md"
"$BUILD/benchmarks/bench_nas" netadapt --table "$OUT/table-fashion-resnet-pruned.json" "${common[@]}" \
  2> "$OUT/netadapt.log" | tee "$OUT/netadapt.md"
