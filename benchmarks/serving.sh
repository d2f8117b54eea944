#!/usr/bin/env bash
# Serving measurements (docs/serving.md): plans run for real over loopback with emulated links against their
# predictions, the server's overhead and throughput, and the fleet simulator against real concurrent clients.
#   bash benchmarks/serving.sh [BUILD_DIR] [OUT_DIR]
# Edge: onednn-cpu, 1 thread, ISA capped at AVX2; cloud: onednn-cpu, 2 threads, the CPU's best ISA.
set -euo pipefail
build=${1:-build}
out=${2:-out/serving}
tailor=$build/tailor
fx=$build/tests/fixtures
links=examples/place/links
py=/usr/bin/python3
mkdir -p "$out"
manifest=$out/manifest.json
edge=backend=onednn-cpu,threads=1,isa=avx2
cloud=backend=onednn-cpu,threads=2
quick=(--max-seconds 3 --min-runs 20 --node-runs 5)
if [ ! -s "$manifest" ]; then
  for m in resnet18 mobilenet_v2 googlenet; do
    "$tailor" profile "$fx/${m}_traced.pt" --input 1x3x224x224 --backends onednn-cpu --threads 1 --isa avx2 \
      --card "$manifest" --name "$m" "${quick[@]}" > /dev/null
    "$tailor" profile "$fx/${m}_traced.pt" --input 1x3x224x224 --backends onednn-cpu --threads 2 \
      --card "$manifest" --name "$m" "${quick[@]}" > /dev/null
  done
fi

serve() {  # serve MODEL_ARGS...; sets port and server_pid
  "$tailor" serve "$@" --port 0 -q > "$out/serve.out" &
  server_pid=$!
  for _ in $(seq 100); do grep -q "serving" "$out/serve.out" 2> /dev/null && break; sleep 0.2; done
  port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$out/serve.out")
}
stop() { kill -TERM "$server_pid"; wait "$server_pid" || true; }

# 1. Plan fidelity: every model on every shipped link, planned, then run for real (30 requests each).
models_args=()
for m in resnet18 mobilenet_v2 googlenet; do
  for l in narrowband 3g lte wifi lan-100m lan-1g; do
    d=$out/plans/$m-$l
    "$tailor" place "$manifest" --edge $edge --cloud $cloud --link "$links/$l.yaml" --variant "$m" -o "$d" > /dev/null
    [ -f "$d/cloud.pt" ] && models_args+=(--model "$m-$l=$d/cloud.pt,threads=2")
  done
done
serve "${models_args[@]}" --executors 1
echo '[' > "$out/fidelity.json"
first=1
for d in "$out"/plans/*; do
  n=$(basename "$d")
  [ $first = 1 ] || echo ',' >> "$out/fidelity.json"
  first=0
  "$tailor" run-plan "$d" --server 127.0.0.1:$port --model "$n" --requests 30 --json >> "$out/fidelity.json"
done
echo ']' >> "$out/fidelity.json"
stop

# 2. Server overhead and throughput: resnet18 whole on the server (1 thread per executor, 2 executors), called
#    without link emulation by 1 and by 4 concurrent clients; the same model timed in-process for comparison.
d=$out/plans/resnet18-lan-1g
"$tailor" place "$manifest" --edge $edge --cloud backend=onednn-cpu,threads=1 --link "$links/lan-1g.yaml" \
  --variant resnet18 --latency-ms 1000 -o "$out/overhead-plan" > /dev/null || true
serve --model whole=$fx/resnet18_traced.pt,input=1x3x224x224,threads=1 --executors 2
"$tailor" run-plan "$out/overhead-plan" --server 127.0.0.1:$port --model whole --requests 200 --no-emulate --json \
  > "$out/overhead-1.json" || true
"$tailor" run-plan "$out/overhead-plan" --server 127.0.0.1:$port --model whole --requests 50 --clients 4 --no-emulate \
  --json > "$out/overhead-4.json" || true
stop
"$tailor" profile "$fx/resnet18_traced.pt" --input 1x3x224x224 --backends onednn-cpu --threads 1 --max-seconds 5 \
  --json > "$out/inprocess.json"

# 3. Fleet simulation against real concurrent clients: a cloud-only plan over Wi-Fi, one server executor.
sim_plan=$out/plans/mobilenet_v2-wifi
serve --model sim=$sim_plan/cloud.pt,threads=2 --executors 1
for c in 1 2 4 8; do
  "$tailor" run-plan "$sim_plan" --server 127.0.0.1:$port --model sim --requests 60 --clients $c --json \
    > "$out/real-$c.json"
done
stop
overhead=$($py -c "import json; r=json.load(open('$out/real-1.json'))['breakdown_ms_mean']; print(max(0, r['encode']+r['network']-r['of_which_emulated']+r['decode']))")
"$tailor" simulate "$sim_plan" --devices 1,2,4,8 --executors 1 --measure --overhead-ms "$overhead" --requests 2000 \
  --json --html "$out/fleet.html" > "$out/simulated.json"

$py - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
rows = json.load(open(f"{out}/fidelity.json"))
ok = 0
print(f"{'plan':28} {'predicted':>10} {'measured p50':>13} {'ratio':>7}")
for r in rows:
    ratio = r["measured_over_predicted_p50"]
    ok += abs(ratio - 1) <= 0.10
    print(f"{os.path.basename(r['plan']):28} {r['predicted_ms']:10.2f} {r['total_ms']['p50']:13.2f} {ratio:7.3f}")
print(f"within +-10%: {ok}/{len(rows)}")
for n in (1, 4):
    f = f"{out}/overhead-{n}.json"
    if os.path.exists(f) and os.path.getsize(f):
        r = json.load(open(f))
        b = r["breakdown_ms_mean"]
        over = b["encode"] + b["network"] + b["server_queue"] + b["decode"]
        print(f"{n} client(s): p50 {r['total_ms']['p50']:.2f} ms, cloud compute {r['breakdown_ms_p50']['cloud_compute']:.2f} ms, "
              f"network p50 {r['breakdown_ms_p50']['network']:.3f} ms, overhead mean {over:.3f} ms, {r['throughput_per_s']:.1f} req/s")
inp = json.load(open(f"{out}/inprocess.json"))
prof = inp[0] if isinstance(inp, list) else inp
print("in-process profile (1 thread):", json.dumps(prof)[:300])
sim = json.load(open(f"{out}/simulated.json"))["placements"][0]["points"]
print(f"{'clients':>7} {'real p50':>9} {'sim p50':>8} {'real p99':>9} {'sim p99':>8}")
for p in sim:
    r = json.load(open(f"{out}/real-{p['devices']}.json"))["total_ms"]
    print(f"{p['devices']:7} {r['p50']:9.2f} {p['latency_ms']['p50']:8.2f} {r['p99']:9.2f} {p['latency_ms']['p99']:8.2f}"
          f"   p50 {p['latency_ms']['p50']/r['p50']-1:+.1%} p99 {p['latency_ms']['p99']/r['p99']-1:+.1%}")
PY
