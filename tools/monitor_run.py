#!/usr/bin/python3
"""A picture of a real vaegand run, drawn from its scraped /metrics.

Starts a private redis-server, vaegan-mockbroker and vaegand (streaming
mode, metrics.quality_sample > 0), puts a backlog of vaegan-gen clicks on
the topic before the daemon starts, then produces a steady, learnable
vaegan-gen stream at --rate events/s for --minutes while scraping /metrics
every --scrape-s seconds, as Prometheus would.  Every event is stamped with
the wall clock when it is produced (the backlog's stamps spread over the
time it would have taken to arrive), so vaegan_newest_event_age_seconds
means what it means in production.

Outputs (--out, default docs/):
  monitoring.png   three panels over time: consumer lag (total, and the
                   events stored per second), click -> list latency p50/p99
                   (from the deltas of the vaegan_list_latency_seconds
                   buckets over --latency-window-s, as histogram_quantile
                   does), live hit rate @20 (and @10) of the served lists
                   against popularity (vaegan_quality_hit_rate);
  monitoring.csv   every scrape: t (seconds since vaegand started), then one
                   column per vaegan_* series (empty where absent);
  monitoring.json  the settings, the phases' times and a summary.
--plot-only CSV redraws the PNG from a CSV and its JSON (beside it).

A series the daemon does not export is drawn as absent, not an error: the
plot says which ones were missing.

The servers, the producer and the helpers are tools/prequential.py's
(imported).  Run with Debian's python (it has matplotlib):
    /usr/bin/python3 tools/monitor_run.py [--minutes 3] [--rate 1000] [--build build-mon]
or use scripts/monitor.sh, which installs and builds first.
"""
import argparse
import atexit
import csv
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prequential as pq  # noqa: E402  (the servers, the producer, the process helpers)

ROOT = pq.ROOT
LAT = "vaegan_list_latency_seconds_bucket"
HIT20 = 'vaegan_quality_hit_rate{ranking="model",k="20"}'


def log(msg):
    print(msg, flush=True)


def die(msg):
    raise SystemExit("monitor_run: " + msg)


pq.die = die  # prequential's helpers report under this script's name


# ---- scraping ----------------------------------------------------------------

def parse_metrics(text):
    """Exposition text -> {series: value}, series as written ('name{labels}' or 'name')."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        key, _, v = line.rpartition(" ")
        try:
            out[key] = float(v)
        except ValueError:
            pass
    return out


class Scraper(threading.Thread):
    """GET /metrics every `every` seconds into self.rows: (t since t0, {series: value})."""

    def __init__(self, port, t0, every):
        super().__init__(daemon=True)
        self.port, self.t0, self.every = port, t0, every
        self.rows, self.misses = [], 0
        self.halt = threading.Event()

    def scrape(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("GET", "/metrics")
            r = c.getresponse()
            return parse_metrics(r.read().decode()) if r.status == 200 else None
        except (OSError, http.client.HTTPException):
            return None
        finally:
            c.close()

    def run(self):
        nxt = time.monotonic()
        while not self.halt.is_set():
            m = self.scrape()
            if m is None:
                self.misses += 1
            else:
                self.rows.append((round(time.monotonic() - self.t0, 3), m))
            nxt += self.every
            self.halt.wait(max(0.0, nxt - time.monotonic()))

    def last(self, key, default=None):
        for _, m in reversed(self.rows):
            if key in m:
                return m[key]
        return default


# ---- the stream --------------------------------------------------------------

class Gen:
    """vaegan-gen's events, read lazily from its stdout: (user, item)."""

    def __init__(self, exe, users, items, events, seed):
        self.p = pq.start([exe, "--users", str(users), "--items", str(items), "--events", str(events),
                           "--seed", str(seed)], "vaegan-gen", stdout=subprocess.PIPE, text=True, bufsize=1 << 20)

    def take(self, n):
        out = []
        for _ in range(n):
            line = self.p.stdout.readline()
            if not line:
                break
            e = json.loads(line)
            out.append((e["user"], e["item"]))
        return out


def produce_backlog(broker, gen, n, rate):
    """n events stamped as if they had arrived at `rate` up to now."""
    now = time.time()
    k = 0
    while k < n:
        evs = gen.take(min(5000, n - k))
        if not evs:
            die("vaegan-gen ended early")
        broker.produce([(u, i, round(now - (n - k - j) / rate, 3)) for j, (u, i) in enumerate(evs)])
        k += len(evs)


def produce_steady(broker, gen, rate, seconds, every, tick=0.1):
    """round(rate * seconds) events over `seconds`, in batches every `tick` s,
    each stamped when sent; every() is called about once a second.  Returns
    the count."""
    want = round(rate * seconds)
    t0 = last = time.monotonic()
    sent = 0
    while sent < want:
        now = time.monotonic()
        due = min(want, int((now - t0) * rate)) - sent
        if due > 0:
            evs = gen.take(due)
            if not evs:
                die("vaegan-gen ended early")
            stamp = round(time.time(), 3)
            broker.produce([(u, i, stamp) for u, i in evs])
            sent += len(evs)
        if now - last >= 1:
            last = now
            every(sent)
        if now - t0 >= seconds:  # behind schedule at the end: the rest goes out at once
            continue
        time.sleep(max(0.0, tick - (time.monotonic() - now)))
    return sent


# ---- figures -------------------------------------------------------------------

def latency_quantiles(rows, window, qs=(0.5, 0.99)):
    """Per scrape, the quantiles of the latencies observed over the last `window`
    seconds, from the bucket deltas (linear inside a bucket, as histogram_quantile)."""
    keys = sorted({k for _, m in rows for k in m if k.startswith(LAT + "{")},
                  key=lambda k: math.inf if 'le="+Inf"' in k else float(k.split('le="')[1].split('"')[0]))
    bounds = [math.inf if 'le="+Inf"' in k else float(k.split('le="')[1].split('"')[0]) for k in keys]
    out = {q: [] for q in qs}
    j = 0
    for t, m in rows:
        while j < len(rows) and rows[j][0] < t - window:
            j += 1
        base = rows[j][1] if j < len(rows) else m
        d = [m.get(k, 0) - base.get(k, 0) for k in keys]
        total = d[-1] if d else 0
        for q in qs:
            if total <= 0 or not keys:
                out[q].append(math.nan)
                continue
            rank = q * total
            b = next(i for i, c in enumerate(d) if c >= rank)
            if math.isinf(bounds[b]):
                out[q].append(bounds[-2] if len(bounds) > 1 else math.nan)
                continue
            lo, below = (0.0, 0.0) if b == 0 else (bounds[b - 1], d[b - 1])
            inb = d[b] - below
            out[q].append(lo + (bounds[b] - lo) * ((rank - below) / inb if inb > 0 else 1.0))
    return out


def series(rows, key):
    return [m.get(key, math.nan) for _, m in rows]


def plot(path, rows, info):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ts = [t for t, _ in rows]
    missing = []

    def have(key):
        ok = any(key in m for _, m in rows)
        if not ok:
            missing.append(key)
        return ok

    fig, ax = plt.subplots(3, 1, figsize=(13, 10), dpi=110, sharex=True)
    marks = info["phases"]

    def phases(a, labels=False):
        for k, (name, t) in enumerate((("joined, stream starts", marks.get("steady_start")),
                                       ("backlog stored", marks.get("backlog_drained")),
                                       ("stream stops", marks.get("steady_end")))):
            if t is not None:
                a.axvline(t, color="k", lw=0.7, ls=":")
                if labels:
                    a.text(t, 0.97 - 0.08 * k, " " + name, transform=a.get_xaxis_transform(), va="top", ha="left",
                           fontsize=7)

    # 1. lag, and the throughput on the right
    a = ax[0]
    if have("vaegan_kafka_lag_messages"):
        a.plot(ts, series(rows, "vaegan_kafka_lag_messages"), color="tab:red", label="consumer lag (messages)")
    parts = sorted({k for _, m in rows for k in m if k.startswith("vaegan_kafka_partition_lag_messages{")})
    for k in parts:
        a.plot(ts, series(rows, k), color="tab:red", lw=0.5, alpha=0.35)
    if parts:
        a.plot([], [], color="tab:red", lw=0.5, alpha=0.35, label=f"per partition ({len(parts)})")
    a.set_ylabel("vaegan_kafka_lag_messages (symlog)")
    a.set_yscale("symlog", linthresh=10)
    a.set_ylim(bottom=0)
    b = a.twinx()
    if have("vaegan_events_stored_total"):
        st = series(rows, "vaegan_events_stored_total")
        b.plot(ts[1:], [(y1 - y0) / (t1 - t0) for t0, t1, y0, y1 in zip(ts, ts[1:], st, st[1:])], color="tab:blue",
               lw=0.6, alpha=0.6, label="events stored/s (between scrapes)")
    if have("vaegan_events_per_second"):
        b.plot(ts, series(rows, "vaegan_events_per_second"), color="tab:blue", lw=1.2,
               label="vaegan_events_per_second (10 s)")
    b.axhline(info["rate"], color="tab:blue", lw=0.7, ls="--", label=f"produced/s ({info['rate']:g})")
    b.set_ylabel("events/s (log)", color="tab:blue")
    b.set_yscale("log")
    h1, l1 = a.get_legend_handles_labels()
    h2, l2 = b.get_legend_handles_labels()
    a.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=8)
    a.set_title("Kafka consumer lag (all partitions), and throughput", fontsize=10)
    phases(a, labels=True)

    # 2. click -> list latency
    a = ax[1]
    if have(LAT + '{le="+Inf"}'):
        qs = latency_quantiles(rows, info["latency_window_s"])
        a.plot(ts, [v * 1e3 for v in qs[0.5]], color="tab:green", label="p50")
        a.plot(ts, [v * 1e3 for v in qs[0.99]], color="tab:purple", label="p99")
        a.set_yscale("log")
    a.set_ylabel("ms (log)")
    a.set_title(f"click → list latency (history acknowledged → rec:<user> written), quantiles of the last "
                f"{info['latency_window_s']:g} s from vaegan_list_latency_seconds", fontsize=10)
    a.legend(loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=8)
    a.grid(alpha=0.3, which="both")
    phases(a)

    # 3. live quality
    a = ax[2]
    for k, lw, ls in (("20", 1.5, "-"), ("10", 0.8, "--")):
        for ranking, color in (("model", "tab:orange"), ("popularity", "tab:gray")):
            key = f'vaegan_quality_hit_rate{{ranking="{ranking}",k="{k}"}}'
            alt = f'vaegan_quality_hit_rate{{k="{k}",ranking="{ranking}"}}'
            key = key if any(key in m for _, m in rows) else alt
            if have(key):
                a.plot(ts, series(rows, key), color=color, lw=lw, ls=ls, label=f"{ranking} @{k}")
    a.set_ylabel("hit rate")
    a.set_ylim(bottom=0)
    a.set_xlabel("seconds since vaegand started")
    a.set_title(f"live hit rate of the served lists vs popularity (vaegan_quality_hit_rate, "
                f"metrics.quality_sample = {info['conf']['metrics'].get('quality_sample', '?')}, "
                f"window {info['conf']['metrics'].get('quality_window', '?')} sampled clicks)", fontsize=10)
    a.legend(loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=8)
    a.grid(alpha=0.3)
    phases(a)
    for x in ax:
        x.grid(alpha=0.3)

    fig.suptitle(f"vaegand under a real run: backlog {info['backlog']:,} events, then {info['rate']:g} events/s "
                 f"for {info['minutes']:g} min ({info['users']:,} users, {info['items']:,} items, "
                 f"{info['partitions']} partitions; scraped every {info['scrape_s']:g} s)"
                 + (f"\nnot exported: {', '.join(missing)}" if missing else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return missing


def write_csv(path, rows):
    keys = sorted({k for _, m in rows for k in m})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t"] + keys)
        for t, m in rows:
            w.writerow([t] + ["" if k not in m else repr(m[k]) for k in keys])


def read_csv(path):
    rows = []
    with open(path, newline="") as f:
        r = csv.reader(f)
        keys = next(r)[1:]
        for line in r:
            rows.append((float(line[0]), {k: float(v) for k, v in zip(keys, line[1:]) if v != ""}))
    return rows


# ---- main ----------------------------------------------------------------------

def config(args, redis, broker, port, state):
    return {
        "kafka": {"brokers": broker.addr, "topic": "clicks", "group": "monitor",
                  "option.session.timeout.ms": 6000, "option.fetch.wait.max.ms": 10,
                  "option.auto.offset.reset": "earliest"},
        "redis": {"socket": redis.sock},
        "state": {"dir": state, "checkpoint_interval_s": 60},
        "serve": {"top_n": 20, "refresh_s": args.refresh_s},
        "train": {"interval_ms": 500, "min_new_events": 1000, "steps_per_round": args.steps, "threads": 1},
        "model": {"hidden": args.hidden, "latent": args.latent, "batch": 256, "anneal_steps": 2000},
        "log": {"level": "info"},
        "metrics": {"listen": f"127.0.0.1:{port}", "kafka_stats_interval_ms": int(args.scrape_s * 1000),
                    "quality_sample": args.quality_sample, "quality_window": args.quality_window},
    }


def apply_sets(conf, sets):
    for s in sets:
        key, eq, value = s.partition("=")
        sec, dot, name = key.strip().partition(".")
        if not eq or not dot:
            die(f"--set {s}: want section.key=value")
        conf.setdefault(sec, {})[name] = value.strip()


def run(args, exe, out):
    pq._tmp = tempfile.mkdtemp(prefix="vaegan-monitor-")
    pq._keep_tmp = args.keep_tmp
    atexit.register(pq._cleanup)
    log(f"monitor_run: temp {pq._tmp}")
    steady_s = args.minutes * 60
    redis = pq.Redis("redis")
    broker = pq.Broker(exe["vaegan-mockbroker"], "broker", args.partitions)
    gen = Gen(exe["vaegan-gen"], args.users, args.items, args.backlog + int(args.rate * steady_s) + 1, args.seed)
    log(f"== backlog: {args.backlog} events on the topic before vaegand starts")
    produce_backlog(broker, gen, args.backlog, args.rate)

    port = pq.free_port()
    conf = config(args, redis, broker, port, os.path.join(pq._tmp, "state"))
    apply_sets(conf, args.set)
    path = pq.write_conf(os.path.join(pq._tmp, "vaegand.conf"), conf)
    r = subprocess.run([exe["vaegand"], "--check-config", "-c", path], capture_output=True, text=True)
    if r.returncode != 0:
        die(f"vaegand --check-config refused {path}:\n{r.stderr.strip()}")

    t0 = time.monotonic()
    daemon = pq.Daemon(exe["vaegand"], "vaegand", path, port)
    scraper = Scraper(port, t0, args.scrape_s)
    scraper.start()
    daemon.wait_joined(120)
    phases = {"joined": round(time.monotonic() - t0, 3)}
    log(f"== steady stream: {args.rate:g} events/s for {args.minutes:g} min (scraping every {args.scrape_s:g} s)")
    phases["steady_start"] = round(time.monotonic() - t0, 3)

    report = {"t": time.monotonic()}

    def every(sent):
        daemon.alive()
        if time.monotonic() - report["t"] >= 30:
            report["t"] = time.monotonic()
            log(f"  t={time.monotonic() - t0:5.0f} s  produced {args.backlog + sent:,}  "
                f"stored {scraper.last('vaegan_events_stored_total', 0):,.0f}  "
                f"lag {scraper.last('vaegan_kafka_lag_messages', math.nan):,.0f}  "
                f"hit@20 model {scraper.last(HIT20, math.nan):.3f}")
    sent = produce_steady(broker, gen, args.rate, steady_s, every)
    phases["steady_end"] = round(time.monotonic() - t0, 3)
    total = args.backlog + sent
    log(f"== stream stopped ({total:,} events); waiting until all are stored, then {args.tail_s:g} s more")
    pq.wait_for(lambda: scraper.last("vaegan_events_stored_total", 0) >= total, 120, 0.5)
    phases["all_stored"] = round(time.monotonic() - t0, 3)
    time.sleep(args.tail_s)
    scraper.halt.set()
    scraper.join(10)
    code = daemon.stop()
    broker.close()
    redis.close()
    rows = scraper.rows
    drained = backlog_stored(rows, args.backlog, args.rate)
    if drained is not None:
        phases["backlog_drained"] = drained
    last = rows[-1][1] if rows else {}
    info = {
        "what": "a real vaegand run scraped from /metrics (tools/monitor_run.py)",
        "minutes": args.minutes, "rate": args.rate, "backlog": args.backlog, "users": args.users,
        "items": args.items, "partitions": args.partitions, "seed": args.seed, "scrape_s": args.scrape_s,
        "latency_window_s": args.latency_window_s, "conf": {s: {k: str(v) for k, v in kv.items()}
                                                          for s, kv in conf.items() if s not in ("kafka", "redis", "state")},
        "phases": phases, "produced": total, "scrapes": len(rows), "failed_scrapes": scraper.misses,
        "vaegand_exit": code,
        "end": {k: last.get(k) for k in ("vaegan_events_stored_total", "vaegan_lists_written_total",
                                         "vaegan_model_step", "vaegan_kafka_lag_messages",
                                         "vaegan_quality_samples_total")},
    }
    return rows, info


def backlog_stored(rows, backlog, rate):
    """The first scrape where the backlog is stored and the catch-up burst is
    over (stored at most 1.5 x the stream's rate since the scrape before);
    None when never."""
    key = "vaegan_events_stored_total"
    for (t0, m0), (t1, m1) in zip(rows, rows[1:]):
        if key in m0 and m1.get(key, 0) >= backlog and (m1[key] - m0[key]) / (t1 - t0) <= 1.5 * rate:
            return t1
    return None


def summarize(rows, info):
    """Means over the steady phase (from a latency window after the backlog was
    stored to the stream's end), for the log and the JSON."""
    lo = info["phases"].get("backlog_drained", info["phases"].get("steady_start", 0)) + info["latency_window_s"]
    hi = info["phases"].get("steady_end", math.inf)
    sel = [(t, m) for t, m in rows if lo <= t <= hi]
    out = {"from_s": lo, "to_s": hi if hi != math.inf else None}
    if not sel:
        return out

    def mean(key):
        v = [m[key] for _, m in sel if key in m and not math.isnan(m[key])]
        return round(sum(v) / len(v), 4) if v else None
    for key in ("vaegan_kafka_lag_messages", "vaegan_events_per_second", "vaegan_lists_per_second",
                'vaegan_quality_hit_rate{ranking="model",k="20"}', 'vaegan_quality_hit_rate{ranking="popularity",k="20"}',
                'vaegan_quality_hit_rate{ranking="model",k="10"}', 'vaegan_quality_hit_rate{ranking="popularity",k="10"}'):
        out["mean " + key] = mean(key)
    qs = latency_quantiles(rows, hi - lo if hi != math.inf else 1e9)
    idx = max(i for i, (t, _) in enumerate(rows) if t <= hi)
    out["p50 latency s (steady phase)"] = qs[0.5][idx]
    out["p99 latency s (steady phase)"] = qs[0.99][idx]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-mon"),
                    help="build dir with vaegand, vaegan-mockbroker, vaegan-gen (default build-mon)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"), help="output dir (default docs/)")
    ap.add_argument("--minutes", type=float, default=3, help="length of the steady stream (default 3)")
    ap.add_argument("--rate", type=float, default=1000, help="events per second of the steady stream (default 1000)")
    ap.add_argument("--backlog", type=int, default=200000,
                    help="events on the topic before vaegand starts (default 200000)")
    ap.add_argument("--users", type=int, default=3000, help="vaegan-gen --users (default 3000)")
    ap.add_argument("--items", type=int, default=1000, help="vaegan-gen --items (default 1000)")
    ap.add_argument("--partitions", type=int, default=8,
                    help="of the topic (default 8; the mock keeps at most 5 MiB, ~60,000 events, per partition)")
    ap.add_argument("--seed", type=int, default=1, help="vaegan-gen --seed (default 1)")
    ap.add_argument("--scrape-s", type=float, default=1, help="scrape interval, also the lag statistics' (default 1)")
    ap.add_argument("--tail-s", type=float, default=15, help="seconds scraped after the last event is stored")
    ap.add_argument("--latency-window-s", type=float, default=10, help="latency quantiles over this many seconds")
    ap.add_argument("--quality-sample", type=float, default=0.2, help="metrics.quality_sample (default 0.2)")
    ap.add_argument("--quality-window", type=int, default=2000, help="metrics.quality_window (default 2000)")
    ap.add_argument("--refresh-s", type=int, default=30, help="serve.refresh_s (default 30)")
    ap.add_argument("--hidden", type=int, default=200, help="model.hidden (default 200)")
    ap.add_argument("--latent", type=int, default=64, help="model.latent (default 64)")
    ap.add_argument("--steps", type=int, default=5, help="train.steps_per_round (default 5)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="any other vaegand setting (repeatable), e.g. --set serve.batch=128")
    ap.add_argument("--plot-only", metavar="CSV", help="redraw the PNG (in --out) from a CSV and the JSON beside it")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, configuration, state)")
    args = ap.parse_args()

    for sig in (signal.SIGTERM, signal.SIGHUP):  # atexit does not run on a fatal signal
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, lambda signum, frame: die(f"stopped by signal {signum}"))
    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, "monitoring.png")
    if args.plot_only:
        rows = read_csv(args.plot_only)
        with open(os.path.splitext(args.plot_only)[0] + ".json") as f:
            info = json.load(f)
        missing = plot(png, rows, info)
        log(f"wrote {png}" + (f" (not exported: {', '.join(missing)})" if missing else ""))
        return
    if args.rate <= 0 or args.minutes <= 0:
        die("--rate and --minutes must be positive")
    if not pq.shutil.which("redis-server"):
        die("redis-server not on PATH (scripts/deps.sh installs it)")
    exe = {n: pq.find_binary(args.build, n) for n in ("vaegand", "vaegan-mockbroker", "vaegan-gen")}
    rows, info = run(args, exe, args.out)
    info["steady_phase"] = summarize(rows, info)
    base = os.path.join(args.out, "monitoring")
    write_csv(base + ".csv", rows)
    for final in (False, True):  # written before the plot too: --plot-only can redraw after a failure
        if final:
            info["not_exported"] = missing = plot(png, rows, info)
        with open(base + ".json", "w") as f:
            json.dump(info, f, indent=1)
            f.write("\n")
    log("")
    for k, v in info["steady_phase"].items():
        log(f"  {k}: {v}")
    log(f"phases (s since vaegand started): {info['phases']}")
    log(f"wrote {png}, {base}.csv, {base}.json ({len(rows)} scrapes)"
        + (f"; not exported: {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        die("interrupted")
