#!/usr/bin/env bash
# The latency model on this machine (issue 17): for each target, build a table from nothing on the zoo search
# spaces, then validate it on new architectures (predicted against measured, interleaved) with the baselines and
# the noise floor. Writes OUT/<target>.table.json, OUT/<target>.validation.json and OUT/summary.md.
#   bash benchmarks/latency_model.sh [OUT] ; env: TAILOR (the CLI), COUNT (validation models, 200), BUILD_MODELS
#   (300), BUILD_MINUTES (5), SECONDS_PER_MODEL (1.2), TARGETS ("onednn-cpu:1:float32 ..."), ISAS (native, plus
#   avx2 when the CPU has more).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/latency}
TAILOR=${TAILOR:-build/tailor}
COUNT=${COUNT:-200}
BUILD_MODELS=${BUILD_MODELS:-300}
BUILD_MINUTES=${BUILD_MINUTES:-5}
SECONDS_PER_MODEL=${SECONDS_PER_MODEL:-1.2}
TARGETS=${TARGETS:-"onednn-cpu:1:float32 onednn-cpu:2:float32 libtorch-cpu:1:float32 onednn-cpu:1:int8"}
mkdir -p "$OUT"
native=$("$TAILOR" profile fashion-cnn --backends onednn-cpu --max-seconds 0.05 --min-runs 2 --node-runs 0 --json |
         /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['profiles'][0]['isa'])")
ISAS=${ISAS:-$native}
if [ -z "${ISAS_SET:-}" ] && [ "$native" != avx2 ] && [ "$ISAS" = "$native" ]; then ISAS="$native avx2"; fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); oneDNN ISA here: $native; ISAs run: $ISAS"
for isa in $ISAS; do
  cap=""
  [ "$isa" != "$native" ] && cap="--isa $isa"
  for t in $TARGETS; do
    IFS=: read -r backend threads dtype <<<"$t"
    name="$backend-${threads}t-$dtype-$isa"
    echo "== $name: build"
    # shellcheck disable=SC2086
    "$TAILOR" latency build --backend "$backend" --threads "$threads" --dtype "$dtype" $cap --count "$BUILD_MODELS" \
      --minutes "$BUILD_MINUTES" --fresh -o "$OUT/$name.table.json" --json > "$OUT/$name.build.json"
    echo "== $name: validate on $COUNT new architectures"
    "$TAILOR" latency validate --table "$OUT/$name.table.json" --count "$COUNT" --seconds "$SECONDS_PER_MODEL" \
      -o "$OUT/$name.validation.json" | tee "$OUT/$name.validation.txt"
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
lines = ["| target | models | build (models, s) | model ±10% | ±5% | RMSE % | Kendall τ | calibrated ±10% | op-sum ±10% / τ | MACs ±10% / τ | noise floor ±10% / ±5% | predictions/s (cold) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for v in sorted(glob.glob(os.path.join(out, "*.validation.json"))):
    r = json.load(open(v)); b = json.load(open(v.replace(".validation.json", ".build.json")))
    m, o, c, n = r["latency_model"], r["op_sum_without_kernel_detection"], r["macs_proportional"], r["noise_floor_repeat"]
    lines.append(f"| {r['target']} | {r['models']} | {b['models']}, {b['seconds']:.0f} | {100*m['within_10pct']:.1f}% | {100*m['within_5pct']:.1f}% | "
                 f"{m['rmse_pct']:.1f} | {m['kendall_tau']:.3f} | {100*r['calibrated_by_reference']['within_10pct']:.1f}% | "
                 f"{100*o['within_10pct']:.1f}% / {o['kendall_tau']:.3f} | "
                 f"{100*c['within_10pct']:.1f}% / {c['kendall_tau']:.3f} | {100*n['within_10pct']:.1f}% / {100*n['within_5pct']:.1f}% | "
                 f"{r['predictions_per_second']:.0f} ({r['predictions_per_second_cold']:.0f}) |")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
