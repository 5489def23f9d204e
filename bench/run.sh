#!/usr/bin/env bash
# Speed figures for the README: cblas_sgemm rate on the training shapes,
# seconds per batch/epoch of mult-vae and avb+d+c at the MovieLens-20M shape
# (synthetic) and on MovieLens-100K, with 1 and 2 threads; then the daemon
# end to end (vaegan-bench-stream: events/s from the broker to the Redis
# histories, click -> rec:<user> latency at 1,000 and 10,000 events/s).
#
#   bench/run.sh [path/to/ml-100k/u.data]
#
# The stream benchmark needs redis-server on PATH; set VAEGAN_BENCH_STREAM=0
# to skip it, or VAEGAN_BENCH_STREAM_ARGS to pass options (e.g.
# "--events 500000 --rate-seconds 10").
#
# Run it on a quiet machine.  It honours an OPENBLAS_CORETYPE already set by
# the operator; unset it (and OPENBLAS_L2_SIZE) to let the binaries choose
# the kernels themselves, as they do in production.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/ml-100k/u.data}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target vaegan-bench-gemm vaegan-bench-train vaegan-eval \
  vaegan-bench-stream vaegand vaegan-mockbroker vaegan-gen >/dev/null
for t in 1 2; do
  echo "== cblas_sgemm, $t thread(s)"
  build/bench/vaegan-bench-gemm "$t" 5
done
for t in 1 2; do
  for v in mult-vae avb+d+c; do
    echo "== training step, ML-20M shape, $v, $t thread(s)"
    build/bench/vaegan-bench-train --variant "$v" --threads "$t" --batches 10 --warmup 2 --infer-users 10000
  done
done
if [ -f "$data" ]; then
  for t in 1 2; do
    for v in mult-vae avb+d+c; do
      echo "== MovieLens-100K weak, $v, $t thread(s), 20 epochs"
      build/vaegan-eval --data "$data" --format ml100k --protocol weak --variant "$v" --epochs 20 \
        --threads "$t" 2>/dev/null | tail -1
    done
  done
fi
if [ "${VAEGAN_BENCH_STREAM:-1}" != 0 ]; then
  echo "== vaegand end to end: ingest events/s, click -> rec:<user> latency at 1,000 and 10,000 events/s"
  # word splitting of the extra options is wanted here
  # shellcheck disable=SC2086
  build/bench/vaegan-bench-stream ${VAEGAN_BENCH_STREAM_ARGS:-}
fi
