#!/usr/bin/env bash
# Placement fidelity (docs/placement.md): profiles the models on the edge (onednn-cpu, 1 thread, ISA capped at
# AVX2) and the cloud (onednn-cpu, 2 threads, the CPU's best ISA), picks candidate placements, times every
# candidate's edge and cloud parts for real, and reports the planner's choice and prediction against them.
#   [FASHION_MODEL=exit.pt] bash benchmarks/placement.sh [BUILD_DIR] [OUT_DIR]
# FASHION_MODEL: a Fashion-MNIST model with an early exit (benchmarks/early_exit.py writes one); default: the zoo's.
set -euo pipefail
build=${1:-build}
out=${2:-out/placement}
fx=$build/tests/fixtures
bench=$build/benchmarks/bench_place
[ -x "$bench" ] || { echo "build bench_place first: cmake -B $build -DTAILOR_BUILD_BENCHMARKS=ON && cmake --build $build --target bench_place" >&2; exit 1; }
models=(resnet18=$fx/resnet18_traced.pt:1x3x224x224 mobilenet_v2=$fx/mobilenet_v2_traced.pt:1x3x224x224
        googlenet=$fx/googlenet_traced.pt:1x3x224x224 densenet121=$fx/densenet121_traced.pt:1x3x224x224
        fashion-exit=${FASHION_MODEL:-fashion-resnet}:1x1x28x28)
mkdir -p "$out"
"$bench" profile --role edge --threads 1 --isa avx2 --out "$out" "${models[@]}"
"$bench" profile --role cloud --threads 2 --out "$out" "${models[@]}"
"$bench" candidates --out "$out" "${models[@]}"
"$bench" measure --role edge --threads 1 --isa avx2 --out "$out" "${models[@]}"
"$bench" measure --role cloud --threads 2 --out "$out" "${models[@]}"
"$bench" report --out "$out" "${models[@]}" | tee "$out/report.txt"
