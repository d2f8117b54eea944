#!/usr/bin/env bash
# Fuzzes tailor's readers with libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer (docs/reliability.md).
#   bash scripts/fuzz.sh TARGET|all SECONDS [BUILD_DIR]   fuzz each target for SECONDS (0: only replay the corpus)
#   bash scripts/fuzz.sh --list [BUILD_DIR]               the targets and what they read
# Builds BUILD_DIR (default: build) first, then BUILD_DIR/fuzz/tailor_fuzz with clang (tests/fuzz/build_fuzzer.py).
# Each target starts from tests/fuzz/seeds/TARGET and tests/fuzz/regressions/TARGET; what it finds goes to
# BUILD_DIR/fuzz/corpus/TARGET (new inputs) and BUILD_DIR/fuzz/crashes/TARGET (crashes, with how to replay them).
# A crash, once fixed, is copied to tests/fuzz/regressions/TARGET so that the normal test suite replays it.
# Exit status: 0 when no target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --list ]; then
  set -- list 0 "${2:-build}"
fi
target=${1:?usage: bash scripts/fuzz.sh TARGET|all SECONDS [BUILD_DIR]}
seconds=${2:?usage: bash scripts/fuzz.sh TARGET|all SECONDS [BUILD_DIR]}
build=${3:-build}
fuzz=$build/fuzz

if ! command -v clang++ > /dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a > /dev/null 2>&1; then
  apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang libclang-rt-14-dev > /dev/null
fi
# TAILOR_FUZZ_NO_REBUILD=1 fuzzes the binary as it is (for several runs at once while the sources change).
if [ "${TAILOR_FUZZ_NO_REBUILD:-0}" != 1 ]; then
  if [ ! -x "$build/tests/tailor_tests" ]; then
    BUILD_DIR=$build bash scripts/build.sh
  fi
  ninja -C "$build" tailor_tests > /dev/null
  # Rebuild the fuzzer when any reader or harness is newer than it.
  if [ ! -x "$fuzz/tailor_fuzz" ] || [ -n "$(find src tests/fuzz include "$build/libtailor.a" -newer "$fuzz/tailor_fuzz" \
      -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.py' -o -name '*.a' \) | head -1)" ]; then
    python3 tests/fuzz/build_fuzzer.py "$build" "$fuzz"
  fi
fi

listing=$(TAILOR_FUZZ_TARGET=--list "$fuzz/tailor_fuzz" -runs=0 2>&1 || true)  # lists the targets, exits 2
targets=$(echo "$listing" | sed -n 's/^  \([a-z-]*\) .*/\1/p')
if [ "$target" = list ]; then
  echo "$listing" | grep '^  '
  exit 0
fi
[ "$target" = all ] || targets=$target

# LibTorch and the libraries it loads keep memory for the life of the process: leak checks would report them, not
# tailor. ASan's other checks and UBSan stay on, and stop at the first report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1
failed=()
for t in $targets; do
  corpus=$fuzz/corpus/$t
  crashes=$fuzz/crashes/$t
  mkdir -p "$corpus" "$crashes"
  seeds=()
  for d in tests/fuzz/seeds/$t tests/fuzz/regressions/$t; do [ -d "$d" ] && seeds+=("$d"); done
  log=$fuzz/$t.log
  [ "$seconds" = 0 ] && log=$fuzz/$t.replay.log
  start=$(date +%s)
  if [ ${#seeds[@]} = 0 ]; then
    echo "$t: no seeds in tests/fuzz/seeds/$t (write them with tests/fuzz/make_seeds.py)" >&2
    failed+=("$t")
    continue
  fi
  if [ "$seconds" = 0 ]; then
    # Replay only: every seed and past crash once.
    files=$(find "${seeds[@]}" -type f)
    # shellcheck disable=SC2086
    TAILOR_FUZZ_TARGET=$t "$fuzz/tailor_fuzz" $files > "$log" 2>&1 && status=0 || status=$?
  else
    # Long runs fork a worker that libFuzzer restarts after a crash, so one crash does not end the target's time:
    # every crash of the run is saved under $crashes.
    fork=()
    [ "$seconds" -ge 60 ] && fork=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    before=$(find "$crashes" -type f | wc -l)
    TAILOR_FUZZ_TARGET=$t "$fuzz/tailor_fuzz" "$corpus" "${seeds[@]}" -max_total_time="$seconds" -timeout=20 \
      -rss_limit_mb=6144 -max_len=65536 -artifact_prefix="$crashes/" -print_final_stats=1 "${fork[@]}" > "$log" 2>&1 \
      && status=0 || status=$?
    [ "$(find "$crashes" -type f | wc -l)" = "$before" ] || status=1
  fi
  # Executions: libFuzzer's final statistics, or in fork mode its last status line ("#N: cov: ..."). Logs may hold
  # raw input bytes, hence -a.
  runs=$(grep -a -o -E 'stat::number_of_executed_units: *[0-9]+|#[0-9]+: cov:' "$log" | tail -1 | grep -o -E '[0-9]+' | head -1 || true)
  cov=$(grep -a -o -E 'cov: [0-9]+' "$log" | tail -1 || true)
  printf '%-14s %5d s  %10s runs  %-10s  %s\n' "$t" $(( $(date +%s) - start )) "${runs:-$(grep -c '^Executed' "$log" || true)}" \
    "${cov:-}" "$([ $status = 0 ] && echo ok || echo "CRASH (see $log and $crashes)")"
  [ $status = 0 ] || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]}; replay one with: TAILOR_FUZZ_TARGET=TARGET $fuzz/tailor_fuzz FILE" >&2
  exit 1
fi
