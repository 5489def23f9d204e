#!/usr/bin/env bash
# The README's main job: a complete vaegand on this machine, nothing to set up.
#
# Installs what is missing, builds, starts a private redis-server on a unix
# socket in a temporary directory, runs vaegand with the embedded
# Kafka-protocol broker (kafka.brokers = embedded), produces a synthetic click
# stream into it with kcat (vaegan-gen), waits until every event is in Redis
# and the model has trained, then shows a few users' rec:<user> lists, the
# daemon's vaegan:model hash, and one more click reaching a list.
#
#   scripts/demo.sh [USERS [ITEMS [EVENTS]]]      defaults: 2000 500 100000
#   KEEP_TMP=1 scripts/demo.sh                    keep the temp dir (logs, state)
#   DEMO_STAY=1 scripts/demo.sh                   leave the daemon running at the end and print
#                                                 B=broker S=redis-socket C=config for the README examples
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-2000} ITEMS=${2:-500} EVENTS=${3:-100000}

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target vaegand vaegan-gen >/dev/null

tmp=$(mktemp -d /tmp/vaegan-demo-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
sock=$tmp/redis.sock
rcli() { redis-cli -s "$sock" "$@"; }

echo "== redis-server on $sock"
redis-server --port 0 --unixsocket "$sock" --dir "$tmp" --save "" --appendonly no >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$tmp/vaegand.conf" <<CONF
[kafka]
brokers = embedded
topic = clicks
option.fetch.wait.max.ms = 10
option.session.timeout.ms = 6000
[redis]
socket = $sock
[serve]
top_n = 10
[state]
dir = $tmp/state
checkpoint_interval_s = 10
[events]
types = click, purchase
removal_types = remove, dislike
[train]
interval_ms = 500
min_new_events = 1000
steps_per_round = 10
[model]
batch = 200
[metrics]
listen =
CONF

echo "== vaegand (log: $tmp/vaegand.log)"
build/vaegand -c "$tmp/vaegand.conf" 2>"$tmp/vaegand.log" &
daemon=$!
pids+=($daemon)
addr=
for _ in $(seq 300); do
  addr=$(sed -n 's/.*embedded Kafka-protocol broker listening on \([^ ]*\).*/\1/p' "$tmp/vaegand.log" | head -1)
  [ -n "$addr" ] && break
  kill -0 $daemon 2>/dev/null || { cat "$tmp/vaegand.log"; exit 1; }
  sleep 0.1
done
echo "   embedded broker at $addr"

echo "== producing $EVENTS events ($USERS users, $ITEMS items) with kcat"
t0=$(date +%s%N)
build/vaegan-gen --users "$USERS" --items "$ITEMS" --events "$EVENTS" --seed 1 \
  | sed 's/^{"user":"\([^"]*\)".*/\1\t&/' \
  | kcat -P -b "$addr" -t clicks -K $'\t' -z lz4
for _ in $(seq 600); do
  n=$(rcli zcard vaegan:users)
  step=$(rcli hget vaegan:model step)
  [ "$n" -ge "$USERS" ] && [ "${step:-0}" -ge 50 ] && break
  sleep 0.5
done
printf "   %s users in Redis, model at step %s, %.1f s after the first event\n" \
  "$n" "${step:-0}" "$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { print (b - a) / 1e9 }')"

for u in u0 u1 u2; do
  echo "== $u: $(rcli zcard hist:$u) items in hist:$u; ZREVRANGE rec:$u 0 9 WITHSCORES:"
  rcli zrevrange "rec:$u" 0 9 withscores | paste - - | sed 's/^/   /'
done
sample=$(( USERS < 200 ? USERS : 200 ))
distinct=$(for ((k = 0; k < sample; k++)); do rcli zrevrange "rec:u$k" 0 9 | paste -sd' '; done | sort -u | wc -l)
echo "== personalised: $distinct distinct top-10 lists among $sample users (a popularity ranking gives about 1)"
echo "== vaegan:model"
rcli hgetall vaegan:model | paste - - | sed 's/^/   /'

top=$(rcli zrevrange rec:u0 0 0)
echo "== u0 clicks its top item $top; rec:u0 a moment later:"
echo "u0	{\"user\":\"u0\",\"item\":\"$top\",\"ts\":$(date +%s)}" | kcat -P -b "$addr" -t clicks -K $'\t'
sleep 1
rcli zrevrange rec:u0 0 4 | sed 's/^/   /'

if [ -n "${DEMO_STAY:-}" ]; then
  echo "== the daemon keeps running (Ctrl-C stops everything); in another shell:"
  echo "   B=$addr S=$sock C=$tmp/vaegand.conf"
  wait $daemon
  exit 0
fi

echo "== SIGTERM"
kill -TERM $daemon
wait $daemon && echo "   vaegand exited 0; state saved: $(ls "$tmp/state" | paste -sd" ")"
