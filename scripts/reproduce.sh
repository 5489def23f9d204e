#!/usr/bin/env bash
# Reproduces the VAEGAN paper's MovieLens-100K experiment with vaegan-eval:
# weak and strong protocols, avb+d+c and mult-vae, seeds 1 2 3 (mean).
#
#   scripts/reproduce.sh [path/to/u.data]       # default ../shared/data/ml-100k/u.data
#   SEEDS="1" EPOCHS=50 scripts/reproduce.sh    # quicker
#
# Builds in build/ first (installing missing packages).  Per-run JSON lines
# are kept in build/reproduce/*.jsonl.  Takes ~7 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/ml-100k/u.data}
[ -f "$data" ] || { echo "reproduce: no MovieLens-100K u.data at $data (give its path)" >&2; exit 1; }
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target vaegan-eval >/dev/null
out=build/reproduce
mkdir -p "$out"
rm -f "$out"/weak.jsonl "$out"/strong.jsonl
extra=()
[ -n "${EPOCHS:-}" ] && extra=(--epochs "$EPOCHS")
for proto in weak strong; do
  for variant in avb+d+c mult-vae; do
    for s in ${SEEDS:-1 2 3}; do
      echo "vaegan-eval --protocol $proto --variant $variant --seed $s" >&2
      build/vaegan-eval --data "$data" --format ml100k --protocol "$proto" --variant "$variant" \
        --seed "$s" "${extra[@]}" 2>"$out/$proto-$variant-$s.log" | tail -1 >>"$out/$proto.jsonl"
    done
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics as st
d = sys.argv[1]
for proto, keys in (("weak", ["R@5", "R@20", "G@5", "G@20", "M@5", "M@20"]), ("strong", ["R@20", "R@50", "G@100"])):
    rows = [json.loads(l) for l in open(f"{d}/{proto}.jsonl") if l.strip()]
    print(f"\n{proto} protocol (mean over seeds)\n| variant | " + " | ".join(keys) + " | s/epoch |")
    print("|---" * (len(keys) + 2) + "|")
    for v in sorted({r["variant"] for r in rows}):
        rs = [r for r in rows if r["variant"] == v]
        cells = [f"{st.mean(r[k] for r in rs):.3f}" for k in keys]
        print(f"| {v} | " + " | ".join(cells) + f" | {st.mean(r['s_per_epoch'] for r in rs):.2f} |")
PY
