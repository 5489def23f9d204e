#!/usr/bin/python3
"""The hyperparameter study of avb+d+c on MovieLens-100K (issue 13, item 3).

Everything that decides what runs is fixed here, before anything runs:

  * SPACE: the knobs and the values tried (the paper's, Mult-VAE's and
    RecVAE's knobs: epochs, the annealing horizon, alpha cap, beta, lambda,
    dropout, input and hidden noise, the learning rate and its decay, H, K,
    batch size, likelihood, user input normalisation);
  * the budget per protocol (weak and strong, searched apart, split seed 0;
    weak, the paper's table, gets 60 configurations, strong 30):
      1. RANDOM = 40 (strong 20) configurations: the current defaults, then
         the rest drawn uniformly from SPACE with
         random.Random(SAMPLER_SEED + protocol);
      2. LOCAL = 2 rounds (strong 1) of 10: each a single-knob change of the
         best configuration so far (knob and new value drawn with the same
         generator), the best updated after each round;
      3. CONFIRM: the TOP = 5 (strong 3) best run again with the selection
         seeds 102 and 103; the chosen one has the best mean over 101-103;
      4. REPORT: the chosen configuration with model seeds 1, 2, 3, and
         mult-vae at its defaults with seeds 1, 2, 3, for the comparison.
  * selection reads validation NDCG only (val_G@20 weak, val_G@100 strong);
    test metrics are recorded for the tables and never read while choosing;
  * every run uses --patience 50 (early stopping on validation) and one
    BLAS thread; two runs go in parallel (--jobs).

  tools/study.py --data u.data --eval build/vaegan-eval --out build/study
  tools/study.py --out build/study --report       # markdown tables

Runs already in <out>/runs.jsonl are not repeated, so an interrupted study
resumes where it stopped.
"""
import argparse
import concurrent.futures as cf
import json
import math
import os
import random
import statistics as st
import subprocess
import sys

SAMPLER_SEED = 20261202
SELECT_SEEDS = (101, 102, 103)
REPORT_SEEDS = (1, 2, 3)
RANDOM, LOCAL_ROUNDS, TOP = {"weak": 40, "strong": 20}, {"weak": 2, "strong": 1}, {"weak": 5, "strong": 3}
LOCAL_PER_ROUND = 10
PATIENCE = 50
N_USERS = {"weak": 943, "strong": 738}  # training users of split seed 0 (for the annealing horizon)
N_ITEMS = {"weak": 1682, "strong": 1404}

# knob -> values; "anneal" is in epochs ("run": over the whole run), "noise_input"
# in units of 1/sqrt(N) (N: the protocol's item count)
SPACE = {
    "epochs": [200, 400, 1000],
    "anneal": [20, 80, 200, "run"],
    "alpha": [0.05, 0.1, 0.2, 0.4, 1.0],
    "beta": [0, 0.05, 0.2, 0.5],
    "lambda": [0, 1e-4, 3e-4, 1e-3, 3e-3],
    "dropout": [0.2, 0.35, 0.5, 0.65],
    "noise_input": [0, 0.5, 1, 2],
    "noise_hidden": [0, 0.05, 0.1, 0.3],
    "lr": [3e-4, 1e-3, 3e-3],
    "lr_decay": [1, 0.995, 0.98],
    "hidden": [300, 600, 1000],
    "latent": [64, 200],
    "batch": [64, 128, 256, 500],
    "likelihood": ["multinomial", "logistic"],
    "input_norm": [0, 0.5, 1],
}
DEFAULTS = {"weak": dict(epochs=200, anneal="run", alpha=0.2, beta=0.2, dropout=0.5, noise_input=1,
                         noise_hidden=0.1, lr=1e-3, lr_decay=1, hidden=600, latent=200, batch=256,
                         likelihood="multinomial", input_norm=0.5, **{"lambda": 3e-4})}
DEFAULTS["strong"] = dict(DEFAULTS["weak"], batch=500)
VAL = {"weak": "val_G@20", "strong": "val_G@100"}
TEST = {"weak": ["R@20", "G@20", "M@20"], "strong": ["R@20", "R@50", "G@100"]}


def key(proto, variant, cfg, seed):
    return json.dumps([proto, variant, sorted(cfg.items()), seed])


def argv_of(args, proto, variant, cfg, seed):
    a = [args.eval, "--data", args.data, "--format", "ml100k", "--protocol", proto, "--variant", variant,
         "--seed", str(seed), "--split-seed", "0", "--threads", "1"]
    if variant == "mult-vae":
        return a
    n_batches = math.ceil(N_USERS[proto] / cfg["batch"])
    anneal = cfg["epochs"] if cfg["anneal"] == "run" else cfg["anneal"]
    a += ["--patience", str(PATIENCE), "--epochs", str(cfg["epochs"]), "--anneal-steps", str(anneal * n_batches),
          "--alpha", str(cfg["alpha"]), "--beta", str(cfg["beta"]), "--lambda", str(cfg["lambda"]),
          "--dropout", str(cfg["dropout"]), "--noise-input", repr(cfg["noise_input"] / math.sqrt(N_ITEMS[proto])),
          "--noise-hidden", str(cfg["noise_hidden"]), "--lr", str(cfg["lr"]), "--lr-decay", str(cfg["lr_decay"]),
          "--hidden", str(cfg["hidden"]), "--latent", str(cfg["latent"]), "--batch", str(cfg["batch"]),
          "--likelihood", cfg["likelihood"], "--input-norm", str(cfg["input_norm"])]
    return a


class Study:
    def __init__(self, args):
        self.args = args
        self.path = os.path.join(args.out, "runs.jsonl")
        self.done = {}
        if os.path.exists(self.path):
            for line in open(self.path):
                r = json.loads(line)
                self.done[r["key"]] = r

    def run_all(self, jobs):
        """Runs the (proto, variant, cfg, seed) jobs not done yet; returns all their results."""
        todo = [j for j in jobs if key(*j) not in self.done]
        env = dict(os.environ)
        for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            env.pop(v, None)

        def one(j):
            p = subprocess.run(argv_of(self.args, *j), capture_output=True, text=True, env=env)
            if p.returncode != 0:
                sys.exit(f"study: vaegan-eval failed for {j}:\n{p.stderr[-2000:]}")
            return j, json.loads(p.stdout.strip().splitlines()[-1])

        with cf.ThreadPoolExecutor(self.args.jobs) as ex:
            for j, res in ex.map(one, todo):
                rec = {"key": key(*j), "proto": j[0], "variant": j[1], "cfg": j[2], "seed": j[3], "result": res}
                self.done[rec["key"]] = rec
                with open(self.path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(f"{j[0]:6} {j[1]:8} seed {j[3]:3}  val {res[VAL[j[0]]]:.4f}  {res['wall_s']:.0f} s  {j[2]}",
                      file=sys.stderr, flush=True)
        return [self.done[key(*j)] for j in jobs]


def draw(rng):
    return {k: rng.choice(v) for k, v in SPACE.items()}


def neighbour(rng, cfg):
    k = rng.choice(sorted(SPACE))
    return dict(cfg, **{k: rng.choice([v for v in SPACE[k] if v != cfg[k]])})


def val_of(rec):
    return rec["result"][VAL[rec["proto"]]]


def search(study, proto):
    """Stages 1-3 for one protocol; returns the chosen configuration."""
    rng = random.Random(SAMPLER_SEED + (0 if proto == "weak" else 1))
    cfgs = [DEFAULTS[proto]] + [draw(rng) for _ in range(RANDOM[proto] - 1)]
    seed = SELECT_SEEDS[0]
    recs = study.run_all([(proto, "avb+d+c", c, seed) for c in cfgs])
    for _ in range(LOCAL_ROUNDS[proto]):
        best = max(recs, key=val_of)["cfg"]
        seen = {key(proto, "avb+d+c", r["cfg"], seed) for r in recs}
        new = []
        while len(new) < LOCAL_PER_ROUND:
            c = neighbour(rng, best)
            if key(proto, "avb+d+c", c, seed) not in seen:
                seen.add(key(proto, "avb+d+c", c, seed))
                new.append(c)
        recs += study.run_all([(proto, "avb+d+c", c, seed) for c in new])
    top = [r["cfg"] for r in sorted(recs, key=val_of, reverse=True)[:TOP[proto]]]
    conf = study.run_all([(proto, "avb+d+c", c, s) for c in top for s in SELECT_SEEDS])
    return max(top, key=lambda c: st.mean(val_of(r) for r in conf if r["cfg"] == c))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/ml-100k/u.data")
    ap.add_argument("--eval", default="build/vaegan-eval")
    ap.add_argument("--out", default="build/study")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--protocols", default="weak,strong")
    ap.add_argument("--report", action="store_true", help="print the tables of what has run")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    study = Study(args)
    if args.report:
        return report(study)
    for proto in args.protocols.split(","):
        chosen = search(study, proto)
        study.run_all([(proto, "avb+d+c", chosen, s) for s in REPORT_SEEDS] +
                      [(proto, "mult-vae", {}, s) for s in REPORT_SEEDS])
        with open(os.path.join(args.out, f"chosen-{proto}.json"), "w") as f:
            json.dump(chosen, f)
        print(f"study: {proto}: chosen {chosen}", file=sys.stderr)
    report(study)


def fmt_cfg(c, base):
    return ", ".join(f"{k} {v}" for k, v in c.items() if base.get(k) != v) or "(defaults)"


def report(study):
    """Markdown: per protocol the selection runs (validation and test, seconds), the
    confirmation, the reported means, and per knob value the best validation run."""
    recs = list(study.done.values())
    for proto in ("weak", "strong"):
        sel = [r for r in recs if r["proto"] == proto and r["variant"] == "avb+d+c" and r["seed"] == SELECT_SEEDS[0]]
        if not sel:
            continue
        t, v, base = TEST[proto], VAL[proto], DEFAULTS[proto]
        print(f"\n#### {proto}: {len(sel)} configurations (seed {SELECT_SEEDS[0]}), by {v}\n")
        print(f"| # | settings (changes from today's defaults) | {v} | " + " | ".join(t) + " | best epoch | s |")
        print("|---" * (len(t) + 5) + "|")
        for i, r in enumerate(sorted(sel, key=val_of, reverse=True)):
            res = r["result"]
            print(f"| {i + 1} | {fmt_cfg(r['cfg'], base)} | {res[v]:.4f} | " + " | ".join(f"{res[k]:.3f}" for k in t) +
                  f" | {res['best_epoch']} | {res['wall_s']:.0f} |")
        print(f"\nPer knob value, the best {v} among the runs with it (seed {SELECT_SEEDS[0]}):\n")
        print(f"| knob | value: best {v} |\n|---|---|")
        for k, vals in SPACE.items():
            cells = []
            for val in vals:
                rs = [r for r in sel if r["cfg"][k] == val]
                cells.append(f"{val}: {max(map(val_of, rs)):.4f}" if rs else f"{val}: –")
            print(f"| {k} | " + "; ".join(cells) + " |")
        conf = {}
        for r in recs:
            if r["proto"] == proto and r["variant"] == "avb+d+c" and r["seed"] in SELECT_SEEDS:
                conf.setdefault(json.dumps(sorted(r["cfg"].items())), []).append(r)
        conf = {c: rs for c, rs in conf.items() if len(rs) == len(SELECT_SEEDS)}
        if conf:
            print(f"\nConfirmation, mean {v} over seeds {', '.join(map(str, SELECT_SEEDS))}:\n")
            print(f"| settings | {v} (mean ± sd) |\n|---|---|")
            for c, rs in sorted(conf.items(), key=lambda kv: -st.mean(map(val_of, kv[1]))):
                vs = [val_of(r) for r in rs]
                print(f"| {fmt_cfg(dict(json.loads(c)), base)} | {st.mean(vs):.4f} ± {st.stdev(vs):.4f} |")
        print(f"\nReported (test, seeds {', '.join(map(str, REPORT_SEEDS))}, mean ± sd):\n")
        print("| run | " + " | ".join(t) + " | s per run |\n" + "|---" * (len(t) + 2) + "|")
        groups = {}
        for r in recs:
            if r["proto"] == proto and r["seed"] in REPORT_SEEDS:
                groups.setdefault((r["variant"], json.dumps(sorted(r["cfg"].items()))), []).append(r["result"])
        for (var, c), rs in sorted(groups.items()):
            cells = [f"{st.mean(x[k] for x in rs):.3f} ± {st.stdev(x[k] for x in rs) if len(rs) > 1 else 0:.3f}"
                     for k in t]
            label = var if var == "mult-vae" else f"{var} ({fmt_cfg(dict(json.loads(c)), base)})"
            print(f"| {label} | " + " | ".join(cells) + f" | {st.mean(x['wall_s'] for x in rs):.0f} |")


if __name__ == "__main__":
    main()
