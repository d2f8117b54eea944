#!/bin/bash
# Architecture search benchmarks (docs/nas.md): latency tables of this machine (onednn-cpu, 1 thread), then for
# each seed the searched subnets against uniformly scaled networks and evolution against random search, and
# NetAdapt against uniform L1 channel pruning; then mean and spread over the seeds (benchmarks/nas_summary.py).
# `bash benchmarks/nas.sh [OUT]` after building; settings by environment.
set -euo pipefail
OUT=${1:-out/nas}
BUILD=${BUILD:-build}
LIMIT=${LIMIT:-12000}
VALIDATION=${VALIDATION:-2000}
EPOCHS=${EPOCHS:-8}
FINETUNE=${FINETUNE:-2}
EVALUATIONS=${EVALUATIONS:-20}
SEEDS=${SEEDS:-0 1 2}
NETADAPT_SEEDS=${NETADAPT_SEEDS:-$SEEDS}
NETADAPT_FINETUNE=${NETADAPT_FINETUNE:-4}  # epochs of fine-tuning in all, for NetAdapt and uniform pruning alike
SHORT_TERM_IMAGES=${SHORT_TERM_IMAGES:-500}
NETADAPT_STEP=${NETADAPT_STEP:-0.05}
FRACTIONS=${FRACTIONS:-0.7,0.55,0.45}
JUDGE=${JUDGE---judge-as-cut}  # JUDGE= (empty): every proposal fine-tuned before it is judged (NetAdapt's own way)
mkdir -p "$OUT"
lscpu | grep -E 'Model name' > "$OUT/cpu.txt"; grep -o -w -E 'avx2|fma|avx512[a-z_]*|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ' >> "$OUT/cpu.txt"
[ -f "$OUT/table-fashion-resnet.json" ] ||
  "$BUILD/tailor" latency build --backend onednn-cpu --threads 1 --space fashion-resnet --count 400 --minutes 3 \
    -o "$OUT/table-fashion-resnet.json" 2> "$OUT/table-space.log"
[ -f "$OUT/table-fashion-resnet-pruned.json" ] ||
  "$BUILD/tailor" latency build --backend onednn-cpu --threads 1 --models fashion-resnet --models-input 1x1x28x28 \
    --count 200 --minutes 2 -o "$OUT/table-fashion-resnet-pruned.json" 2> "$OUT/table-pruned.log"
common=(--limit "$LIMIT" --validation "$VALIDATION" --epochs "$EPOCHS" --finetune "$FINETUNE")
for seed in $SEEDS; do
  [ -f "$OUT/search-$seed.json" ] && continue  # a rerun goes on where the last one stopped
  "$BUILD/benchmarks/bench_nas" search --table "$OUT/table-fashion-resnet.json" --evaluations "$EVALUATIONS" \
    "${common[@]}" --seed "$seed" --json "$OUT/search-$seed.json" 2> "$OUT/search-$seed.log" | tee "$OUT/search-$seed.md"
done
for seed in $NETADAPT_SEEDS; do
  [ -f "$OUT/netadapt-$seed.json" ] && continue
  "$BUILD/benchmarks/bench_nas" netadapt --table "$OUT/table-fashion-resnet-pruned.json" --limit "$LIMIT" \
    --validation "$VALIDATION" --epochs "$EPOCHS" --finetune "$NETADAPT_FINETUNE" --fractions "$FRACTIONS" \
    --short-term-images "$SHORT_TERM_IMAGES" --step "$NETADAPT_STEP" $JUDGE --seed "$seed" --json "$OUT/netadapt-$seed.json" 2> "$OUT/netadapt-$seed.log" | tee "$OUT/netadapt-$seed.md"
done
python3 "$(dirname "$0")/nas_summary.py" "$OUT" | tee "$OUT/summary.md"
