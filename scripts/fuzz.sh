#!/usr/bin/env bash
# Fuzzes the parsers and loaders with libFuzzer: builds fuzz/'s harnesses in a
# separate clang build (build-fuzz/, VG_FUZZ=ON: every library instrumented
# with -fsanitize=fuzzer-no-link,address,undefined, the harnesses linked with
# -fsanitize=fuzzer; only the targets the harnesses need are built), then
# runs each harness SECONDS seconds (default 60) and prints, per harness, the
# executions, exec/s, libFuzzer's final coverage (cov: edges, ft: features)
# and the crashes found.
#
#   scripts/fuzz.sh [SECONDS]
#   VG_FUZZ_PARALLEL=1 scripts/fuzz.sh 1800    # every harness at once: 30 min of wall time
#
# Each harness runs on a scratch copy of fuzz/corpus/<h> and fuzz/regress/<h>
# (build-fuzz/fuzz-run/<h>/corpus, emptied first), so the committed corpus
# never grows; its log is build-fuzz/fuzz-run/<h>/log.  A crash, leak,
# timeout or out-of-memory input is left in build-fuzz/fuzz-run/<h>/crashes/
# (the path is printed); the script then exits 1 after the other harnesses
# ran.  Once fixed, copy the input to fuzz/regress/<h>/: ctest's
# fuzz_regress_<h> keeps it fixed in the normal builds.
#
# Needs clang and libclang-rt (Debian: clang-14, libclang-rt-14-dev; see
# scripts/deps.sh).  VG_FUZZ_CC picks the compiler (default clang),
# VG_FUZZ_JOBS the build's parallelism (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS]" >&2
  exit 2
fi
cc=${VG_FUZZ_CC:-clang}
command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (clang-14, libclang-rt-14-dev)" >&2; exit 2; }

build=build-fuzz
# harness:max_len:dictionary — max_len a little above the largest real input
# (an event is a few hundred bytes, the state seed 9 KB)
harnesses=(event:4096:event reader:8192:event config:8192:config state:16384:)

echo "== build (clang, libFuzzer + ASan + UBSan) in $build/"
cmake -S . -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVG_FUZZ=ON \
  -DVG_WERROR=OFF >/dev/null
targets=()
for spec in "${harnesses[@]}"; do targets+=("fuzz_${spec%%:*}"); done
cmake --build "$build" -j"${VG_FUZZ_JOBS:-2}" --target "${targets[@]}"

export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The value of libFuzzer's "stat::NAME:" line in log $1 (or "?").
stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n 1 | grep . || echo "?"; }

# one harness: its scratch corpus, the run, its log (run_one NAME MAX_LEN DICT)
run_one() {
  local h=$1 max_len=$2 dict=$3 run=$build/fuzz-run/$1
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/crashes"
  find "fuzz/corpus/$h" "fuzz/regress/$h" -type f ! -name '.*' -exec cp {} "$run/corpus/" \;
  local args=(-max_total_time="$secs" -max_len="$max_len" -timeout=10 -print_final_stats=1
              -artifact_prefix="$run/crashes/")
  [ -n "$dict" ] && args+=(-dict="fuzz/dict/$dict.dict")
  local rc=0
  "$build/fuzz/fuzz_$h" "${args[@]}" "$run/corpus" >"$run/log" 2>&1 || rc=$?
  echo "$rc" >"$run/rc"
}

# VG_FUZZ_PARALLEL=1: every harness at once (the wall time is SECONDS, each
# gets a share of the cores); else one after the other
echo "== fuzzing, $secs s per harness${VG_FUZZ_PARALLEL:+, all at once}"
for spec in "${harnesses[@]}"; do
  IFS=: read -r h max_len dict <<<"$spec"
  if [ -n "${VG_FUZZ_PARALLEL:-}" ]; then run_one "$h" "$max_len" "$dict" & else run_one "$h" "$max_len" "$dict"; fi
done
wait
printf '%-8s %8s %12s %8s %6s %7s %8s\n' harness seconds executions exec/s cov ft crashes
failed=()
for spec in "${harnesses[@]}"; do
  IFS=: read -r h max_len dict <<<"$spec"
  run=$build/fuzz-run/$h
  rc=$(cat "$run/rc")
  final=$(grep -E '^#[0-9]+.* cov: ' "$run/log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$final")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$final")
  crashes=$(find "$run/crashes" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'oom-*' \
    -o -name 'timeout-*' \) | wc -l)
  printf '%-8s %8s %12s %8s %6s %7s %8s\n' "$h" "$secs" "$(stat "$run/log" number_of_executed_units)" \
    "$(stat "$run/log" average_exec_per_sec)" "${cov:-?}" "${ft:-?}" "$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed+=("$h")
  fi
done

for h in "${failed[@]}"; do
  run=$build/fuzz-run/$h
  echo "== fuzz_$h failed; log $run/log; inputs:"
  find "$run/crashes" -type f | sed 's/^/   /'
  grep -E -m 20 'ERROR|SUMMARY|assertion failed|runtime error|Test unit written' "$run/log" || tail -n 20 "$run/log"
done
[ ${#failed[@]} -eq 0 ]
