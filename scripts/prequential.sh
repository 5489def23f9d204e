#!/usr/bin/env bash
# Prequential evaluation of vaegand on MovieLens-100K (tools/prequential.py):
# replays the ratings in timestamp order through mock broker -> vaegand ->
# Redis and measures HR@20 of (a) the online daemon, (b) popularity, (c) a
# model trained on the first half and frozen.  Writes docs/prequential/
# (prequential.png, prequential.json, prequential.csv).
#
#   scripts/prequential.sh                 the full run (~20 min on 2 cores)
#   scripts/prequential.sh --quick         first 20,000 events (output in build-preq/prequential-quick)
#   scripts/prequential.sh --help          every option
#
# Data: $VAEGAN_ML100K, default ../shared/data/ml-100k/u.data.  Builds the
# Release targets vaegand and vaegan-mockbroker into $BUILD (default
# build-preq/, kept apart from the other build dirs).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh python3-matplotlib
BUILD=${BUILD:-build-preq}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" -j1 --target vaegand vaegan-mockbroker >/dev/null
# Debian's python: it has python3-matplotlib (a python3 earlier on PATH may not)
exec /usr/bin/python3 tools/prequential.py --build "$BUILD" "$@"
