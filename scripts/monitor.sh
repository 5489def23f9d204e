#!/usr/bin/env bash
# A picture of a real vaegand run from its scraped /metrics
# (tools/monitor_run.py): private redis-server + vaegan-mockbroker + vaegand,
# a backlog of vaegan-gen clicks, then a steady learnable stream, /metrics
# scraped every second.  Writes docs/monitoring.png (consumer lag, click ->
# list latency p50/p99, live hit rate @20 of the model against popularity),
# docs/monitoring.csv (every scrape) and docs/monitoring.json (settings,
# phases, summary).
#
#   scripts/monitor.sh                          the default run (~3.5 min: 3 min of stream at 1000 events/s)
#   scripts/monitor.sh --minutes 10 --rate 2000 longer, faster
#   scripts/monitor.sh --help                   every option
#
# Builds the Release targets vaegand, vaegan-mockbroker and vaegan-gen into
# $BUILD (default build-mon/, kept apart from the other build dirs).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh python3-matplotlib
BUILD=${BUILD:-build-mon}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" -j2 --target vaegand vaegan-mockbroker vaegan-gen >/dev/null
# Debian's python: it has python3-matplotlib (a python3 earlier on PATH may not)
exec /usr/bin/python3 tools/monitor_run.py --build "$BUILD" "$@"
