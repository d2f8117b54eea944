#!/usr/bin/env bash
# Data-parallel training against one process, same budget and seeds: `tailor train` alone (2 threads) and
# `tailor launch -n 2` (two c10d/Gloo ranks on loopback, 1 thread each), on Fashion-MNIST.
#   benchmarks/ddp.sh [TAILOR] [SEEDS] [EPOCHS] [LIMIT]
set -euo pipefail
tailor=${1:-build/tailor}
seeds=${2:-3}
epochs=${3:-3}
limit=${4:-20000}
out=$(mktemp -d)
common=(fashion-resnet --epochs "$epochs" --limit "$limit" --lr 0.1 --batch-size 128 --json)
printf '| seed | 1 process top-1 %% | 2 ranks top-1 %% | difference (points) | 1 process images/s | 2 ranks images/s per rank |\n|---|---|---|---|---|---|\n'
for ((s = 0; s < seeds; ++s)); do
  OMP_NUM_THREADS=2 "$tailor" train "${common[@]}" --seed "$s" -o "$out/one_$s.pt" > "$out/one_$s.json"
  "$tailor" launch -n 2 --master-port $((29600 + s)) -- "$tailor" train "${common[@]}" --seed "$s" \
    -o "$out/two_$s.pt" > "$out/two_$s.json"
  /usr/bin/python3 - "$out/one_$s.json" "$out/two_$s.json" "$s" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ips = lambda r: sum(h["images_per_second_per_rank"] for h in r["history"]) / len(r["history"])
print(f"| {sys.argv[3]} | {100*a['top1']:.2f} | {100*b['top1']:.2f} | {100*(b['top1']-a['top1']):+.2f} | {ips(a):.0f} | {ips(b):.0f} |")
EOF
done
rm -rf "$out"
