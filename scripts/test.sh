#!/usr/bin/env bash
# The test command: installs what is missing, builds (Release, -Werror) and
# runs every ctest label, then builds again with AddressSanitizer +
# UndefinedBehaviorSanitizer and runs the unit and integration tests, then,
# when clang and libclang-rt are there, fuzzes the parsers and loaders
# (scripts/fuzz.sh, VG_FUZZ_SECONDS per harness, default 60), and last, on CI
# or as root where dpkg and apt are, builds the Debian package and installs it
# (scripts/package.sh --install-test).
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -L unit         # extra arguments go to both ctest runs
#
# Accuracy tests need MovieLens-100K: VAEGAN_ML100K=<path to u.data>
# (default: ../shared/data/ml-100k/u.data beside the checkout, when present);
# without it they are skipped, and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

if [ -z "${VAEGAN_ML100K:-}" ] && [ -f ../shared/data/ml-100k/u.data ]; then
  VAEGAN_ML100K=$(cd ../shared/data/ml-100k && pwd)/u.data
fi
export VAEGAN_ML100K=${VAEGAN_ML100K:-}
jobs=$(nproc)

echo "== build (Release) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DVG_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
echo "== ctest (all labels)"
ctest --test-dir build --output-on-failure "$@"

echo "== build (ASan + UBSan) in build-asan/"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVG_WERROR=ON -DVG_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== ctest -L 'unit|integration' under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -L 'unit|integration' --output-on-failure "$@"

# libFuzzer (scripts/fuzz.sh: its own clang build in build-fuzz/), when clang links a fuzzer (libclang-rt)
if echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
    clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null; then
  echo "== fuzz (${VG_FUZZ_SECONDS:-60} s per harness)"
  scripts/fuzz.sh "${VG_FUZZ_SECONDS:-60}"
else
  echo "== fuzz: skipped (needs clang and libclang-rt)"
fi

# The Debian package (scripts/package.sh: its own Release build in build-deb/,
# cpack -G DEB, then apt-get install, vaegand --version and --check-config on
# the installed configuration, an edited conffile kept across a reinstall,
# remove and purge), on CI or where we are root with dpkg-deb and apt-get
if [ -n "${CI:-}" ] ||
    { [ "$(id -u)" -eq 0 ] && command -v dpkg-deb >/dev/null && command -v apt-get >/dev/null; }; then
  echo "== package"
  scripts/package.sh --install-test
else
  echo "== package: skipped (needs root, dpkg-deb and apt-get, or CI set)"
fi
