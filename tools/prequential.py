#!/usr/bin/python3
"""Prequential (test-then-train) evaluation of vaegand on MovieLens-100K.

The ratings are replayed in timestamp order (ties: file order) through the
real path: vaegan-mockbroker (Kafka protocol) -> vaegand -> redis-server.
Before each event is ingested, the evaluation reads the user's served list
(ZREVRANGE rec:<user> 0 19) and records whether the event's item is in it.
Three recommenders are measured on the same events:

  (a) online   vaegand with its background trainer, from an empty state;
  (b) popular  all-time item counts of the events so far, the user's own
               items excluded, top 20 (computed here, same rules);
  (c) frozen   `vaegand --replay` trains a model on the first half of the
               stream, then vaegand serves the second half with
               train.steps_per_round = 0 (the model never changes); by
               default twice: (c) with as many steps as (a) had made at the
               midpoint, (c2) with 100 epochs (--frozen-epochs).

Rules that hold for every method:
  * events are produced in chunks of consecutive events in which no user
    occurs twice (at most --max-chunk); the lists of a chunk's users are read
    before the chunk is produced, and the next chunk goes out only once each
    of those users has a list written after its event.  Per user the test is
    thus exactly prequential (ML-100K comes in single-user sessions: chunks
    of a fixed size would judge most of a session on one stale list, which
    halves even popularity's hit rate); 100,000 events make ~91,000 chunks.
    (b) is computed with the same snapshots, and exactly per event beside it;
  * an event whose user has no earlier event (no list yet) is a miss;
  * pacing is by events, not by wall time: the online trainer runs one round
    of --steps mini-batch updates per --round-events events
    (train.min_new_events; train.interval_ms = 2^31-1, so its timer never
    fires), chunks are cut where the rounds fall, and the driver waits for
    each round before it goes on.  How much the model trains per event
    therefore does not depend on the machine's load.
  * a daemon that stops making progress (seen: a lock-order deadlock between
    its loop and scorer threads, since fixed) is killed and restarted on the same state,
    as systemd's watchdog would; every restart is reported (see stream()).

Outputs (docs/prequential/, or build-preq/prequential-quick with --quick):
prequential.png (HR@20 per window, a vertical line at 50 %),
prequential.json (settings, windows, means, intervals, per-run reports),
prequential.csv (the windows).

Run with Debian's python (it has matplotlib):
    /usr/bin/python3 tools/prequential.py [--quick] [--build build-preq]
or use scripts/prequential.sh, which installs and builds first.
"""
import argparse
import atexit
import collections
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP = 20
INT_MAX = 2**31 - 1

_procs = []       # (name, Popen) started by us, stopped at exit in reverse order
_tmp = None
_keep_tmp = False


# ---- small helpers -----------------------------------------------------------

def log(msg):
    print(msg, flush=True)


def die(msg):
    raise SystemExit("prequential: " + msg)


def _die_with_parent():
    """In the child: SIGKILL when this script dies, even by SIGKILL."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _cleanup():
    for name, p in reversed(_procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if _tmp and os.path.isdir(_tmp):
        if _keep_tmp:
            log(f"kept {_tmp} (logs, configs, state)")
        else:
            shutil.rmtree(_tmp, ignore_errors=True)


def start(cmd, name, **kw):
    out = open(os.path.join(_tmp, name + ".log"), "a")
    if "stdout" in kw:  # stdout is taken (a summary): the log gets stderr
        kw.setdefault("stderr", out)
    else:
        kw["stdout"] = out
        kw.setdefault("stderr", subprocess.STDOUT)
    p = subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kw)
    out.close()
    _procs.append((name, p))
    return p


def stop(p, timeout=60):
    """SIGTERM and wait; returns the exit code."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None
    return p.returncode


def tail(name, n=3000):
    try:
        with open(os.path.join(_tmp, name + ".log"), errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout, step=0.005):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def write_conf(path, sections):
    with open(path, "w") as f:
        for sec, kv in sections.items():
            f.write(f"[{sec}]\n")
            for k, v in kv.items():
                f.write(f"{k} = {v}\n")
            f.write("\n")
    return path


# ---- servers -----------------------------------------------------------------

class Redis:
    """A private redis-server on a unix socket and a minimal pipelining RESP client."""

    def __init__(self, name):
        self.name = name
        self.dir = os.path.join(_tmp, name)
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.proc = start(["redis-server", "--port", "0", "--unixsocket", self.sock, "--dir", self.dir,
                           "--save", "", "--appendonly", "no"], name)
        self.conn = None
        if not wait_for(self._ping, 15, 0.05):
            die(f"redis-server did not start:\n{tail(name)}")

    def _ping(self):
        try:
            return self.cmd("PING") == "PONG"
        except OSError:
            self.conn = None
            return False

    def _connect(self):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(60)
        s.connect(self.sock)
        self.conn = s
        self.rf = s.makefile("rb")

    def cmd(self, *args):
        return self.pipeline([args])[0]

    def pipeline(self, cmds):
        if self.conn is None:
            self._connect()
        buf = bytearray()
        for c in cmds:
            parts = [str(a).encode() for a in c]
            buf += b"*%d\r\n" % len(parts)
            for p in parts:
                buf += b"$%d\r\n%s\r\n" % (len(p), p)
        self.conn.sendall(bytes(buf))
        out = [self._read() for _ in cmds]
        for r in out:
            if isinstance(r, RuntimeError):
                raise r
        return out

    def _read(self):
        line = self.rf.readline()
        if not line:
            raise OSError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.rf.read(n + 2)[:-2].decode(errors="replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise OSError(f"bad RESP line {line!r}")

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.sock)
            s.sendall(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
            s.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            stop(self.proc)


class Producer:
    """A persistent librdkafka producer (ctypes): no process per chunk.

    Key = user id (librdkafka's default partitioner hashes it, as kcat's
    does), value = the event's JSON.  flush() waits for the broker's
    acknowledgement of every message and fails on any delivery error."""

    def __init__(self, addr):
        import ctypes as C
        self.C = C
        lib = C.CDLL("librdkafka.so.1")
        lib.rd_kafka_conf_new.restype = C.c_void_p
        lib.rd_kafka_conf_set.argtypes = [C.c_void_p, C.c_char_p, C.c_char_p, C.c_char_p, C.c_size_t]
        lib.rd_kafka_new.restype = C.c_void_p
        lib.rd_kafka_new.argtypes = [C.c_int, C.c_void_p, C.c_char_p, C.c_size_t]
        lib.rd_kafka_topic_new.restype = C.c_void_p
        lib.rd_kafka_topic_new.argtypes = [C.c_void_p, C.c_char_p, C.c_void_p]
        lib.rd_kafka_produce.argtypes = [C.c_void_p, C.c_int32, C.c_int, C.c_char_p, C.c_size_t, C.c_char_p,
                                         C.c_size_t, C.c_void_p]
        lib.rd_kafka_flush.argtypes = [C.c_void_p, C.c_int]
        lib.rd_kafka_poll.argtypes = [C.c_void_p, C.c_int]
        lib.rd_kafka_last_error.restype = C.c_int
        lib.rd_kafka_err2str.restype = C.c_char_p
        lib.rd_kafka_topic_destroy.argtypes = [C.c_void_p]
        lib.rd_kafka_destroy.argtypes = [C.c_void_p]
        lib.rd_kafka_conf_set_dr_msg_cb.argtypes = [C.c_void_p, C.c_void_p]
        self.lib = lib
        self.failed = []
        DR = C.CFUNCTYPE(None, C.c_void_p, C.c_void_p, C.c_void_p)

        def on_delivery(rk, msg, opaque):
            err = C.cast(msg, C.POINTER(C.c_int))[0]  # rd_kafka_message_t.err is the first field
            if err:
                self.failed.append(lib.rd_kafka_err2str(err).decode())
        self._dr = DR(on_delivery)  # keep a reference
        conf = lib.rd_kafka_conf_new()
        err = C.create_string_buffer(512)
        for k, v in (("bootstrap.servers", addr), ("linger.ms", "0"), ("acks", "all"),
                     ("enable.idempotence", "false")):
            if lib.rd_kafka_conf_set(conf, k.encode(), v.encode(), err, 512) != 0:
                die(f"librdkafka: {k}={v}: {err.value.decode()}")
        lib.rd_kafka_conf_set_dr_msg_cb(conf, C.cast(self._dr, C.c_void_p))
        self.rk = lib.rd_kafka_new(0, conf, err, 512)
        if not self.rk:
            die("librdkafka: " + err.value.decode())
        self.rkt = lib.rd_kafka_topic_new(self.rk, b"clicks", None)

    def produce(self, msgs):
        for key, value in msgs:
            k, v = key.encode(), value.encode()
            while self.lib.rd_kafka_produce(self.rkt, -1, 2, v, len(v), k, len(k), None) != 0:
                code = self.lib.rd_kafka_last_error()
                if code != -184:  # RD_KAFKA_RESP_ERR__QUEUE_FULL
                    die("librdkafka produce: " + self.lib.rd_kafka_err2str(code).decode())
                self.lib.rd_kafka_poll(self.rk, 10)
        if self.lib.rd_kafka_flush(self.rk, 60000) != 0:
            die("librdkafka: messages not delivered within 60 s")
        if self.failed:
            die("librdkafka delivery failed: " + self.failed[0])

    def close(self):
        self.lib.rd_kafka_flush(self.rk, 10000)
        self.lib.rd_kafka_topic_destroy(self.rkt)
        self.lib.rd_kafka_destroy(self.rk)


class Broker:
    """vaegan-mockbroker; its bootstrap address is read from its stdout."""

    def __init__(self, exe, name, partitions, producer="librdkafka"):
        self.name = name
        self.proc = start([exe, "--topic", "clicks", "--partitions", str(partitions)], name)
        pat = re.compile(r"^\s*(\d+\.\d+\.\d+\.\d+):(\d+)\s*$", re.M)
        self.addr = None

        def found():
            m = pat.search(tail(name, 100000))
            if m:
                self.addr = f"{m.group(1)}:{m.group(2)}"
            return self.addr is not None or self.proc.poll() is not None
        wait_for(found, 15, 0.05)
        if not self.addr or self.proc.poll() is not None:
            die(f"vaegan-mockbroker printed no address:\n{tail(name)}")
        self.producer = Producer(self.addr) if producer == "librdkafka" else None
        self.n = 0

    def produce(self, events):
        """events: list of (user, item, ts); key = user, value = JSON with string ids."""
        msgs = [(u, f'{{"user":"{u}","item":"{i}","ts":{ts}}}') for u, i, ts in events]
        if self.producer:
            self.producer.produce(msgs)
        else:
            path = os.path.join(_tmp, "chunk.txt")
            with open(path, "w") as f:
                for k, v in msgs:
                    f.write(f"{k}\t{v}\n")
            r = subprocess.run(["kcat", "-P", "-b", self.addr, "-t", "clicks", "-K", "\t", "-l", path],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                die("kcat produce failed: " + r.stderr[-2000:])
        self.n += len(events)

    def inventory(self, ev):
        """For an error message: what the broker holds, and where the given events are."""
        r = subprocess.run(["kcat", "-C", "-b", self.addr, "-t", "clicks", "-e", "-q", "-f", "%p %o %k %s\n"],
                           capture_output=True, text=True, timeout=120)
        lines = r.stdout.splitlines()
        per = collections.Counter(l.split(" ", 1)[0] for l in lines)
        where = [l for l in lines if any(f'"user":"{u}","item":"{i}"' in l for u, i, _, _ in ev)]
        return (f"broker holds {len(lines)} messages (produced {self.n}), per partition {dict(per)}; "
                f"this chunk's: {where}")

    def close(self):
        if self.producer:
            self.producer.close()
            self.producer = None
        stop(self.proc)


class Daemon:
    """vaegand in streaming mode, watched through its metrics endpoint."""

    def __init__(self, exe, name, conf, port):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.proc = start([exe, "-c", conf], name)
        self.conn = None

    def alive(self):
        if self.proc.poll() is not None:
            die(f"{self.name} exited with code {self.proc.returncode}:\n{tail(self.name)}")

    def metrics(self):
        """The Prometheus text as {name: value} (None while the endpoint does not answer)."""
        self.alive()
        import http.client
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.conn.request("GET", "/metrics")
                text = self.conn.getresponse().read().decode()
                break
            except (OSError, http.client.HTTPException):
                if self.conn:
                    self.conn.close()
                self.conn = None
        else:
            return None
        m = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    m[k] = float(v)
                except ValueError:
                    pass
        return m

    def metric(self, key):
        m = self.metrics()
        return m.get(key, 0.0) if m else 0.0

    def wait_joined(self, timeout=60):
        if not wait_for(lambda: (self.alive() or True) and "consumer group joined" in tail(self.name, 10**7),
                        timeout, 0.05):
            die(f"{self.name} did not join the consumer group in {timeout} s:\n{tail(self.name)}")
        if not wait_for(lambda: self.metrics() is not None, 10, 0.05):
            die(f"{self.name}: no metrics on {self.url}")
        self.first_step = self.metric("vaegan_model_step")  # the loaded model's step, if any

    def backtrace(self):
        """For an error message: every thread's stack (gdb, when installed), saved beside the log."""
        if not shutil.which("gdb"):
            return "(no gdb for the threads' stacks)"
        r = subprocess.run(["gdb", "-p", str(self.proc.pid), "-batch", "-ex", "thread apply all bt"],
                           capture_output=True, text=True, timeout=120)
        path = os.path.join(_tmp, self.name + ".stacks.txt")
        with open(path, "w") as f:
            f.write(r.stdout + r.stderr)
        keep = [l for l in r.stdout.splitlines() if l.startswith("Thread ") or
                re.search(r"lock|cond_wait|vg_|on_batch|scorer|trainer", l)]
        return f"threads of {self.name} (all in {path}):\n" + "\n".join(keep[:80])

    def kill(self):
        """A stuck process cannot handle SIGTERM (its loop thread is blocked): SIGKILL after 3 s."""
        self.proc.terminate()
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        code = stop(self.proc, 120)
        if code != 0:
            log(f"WARNING: {self.name} exited with {code}")
        return code


def scan_logs(prefix):
    """scan_log of every log whose name starts with prefix (a daemon and its restarts)."""
    out = {}
    for f in sorted(os.listdir(_tmp)):
        if f.startswith(prefix) and f.endswith(".log"):
            out[f[:-4]] = scan_log(f[:-4])
    return out


def scan_log(name):
    """Counts and first lines of the daemon's warnings and errors."""
    path = os.path.join(_tmp, name + ".log")
    counts = collections.Counter()
    first = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                lvl = None
                for w in ("ERROR", "WARN", "error", "warn"):
                    if re.search(r"\b%s\b" % w, line):
                        lvl = w.upper()
                        break
                if lvl:
                    counts[lvl] += 1
                    if len(first) < 20:
                        first.append(line.rstrip())
    except OSError:
        pass
    return {"counts": dict(counts), "first": first}


# ---- data --------------------------------------------------------------------

def load_events(path, min_rating):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f):
            p = line.split("\t")
            if len(p) != 4:
                die(f"{path}:{n + 1}: expected user<TAB>item<TAB>rating<TAB>ts")
            u, i, r, ts = p[0], p[1], int(p[2]), int(p[3])
            if r >= min_rating:
                rows.append((ts, n, u, i, r))
    rows.sort()  # timestamp, then file order
    return [(u, i, ts, r) for ts, n, u, i, r in rows]


# ---- (b) popularity ----------------------------------------------------------

class Popularity:
    """Items ranked by count (all events so far), updated in O(1) per event.

    order[] holds the items by count descending; start[c] is the first
    position of the items with count c (a count that has no items keeps the
    position where they would begin, which is all the update needs)."""

    def __init__(self):
        self.order, self.pos, self.count, self.start = [], {}, {}, {}

    def add(self, item):
        if item not in self.pos:
            self.pos[item] = len(self.order)
            self.order.append(item)
            self.count[item] = 0
            self.start.setdefault(0, len(self.order) - 1)
        c = self.count[item]
        j = self.start[c]
        other = self.order[j]
        pi = self.pos[item]
        self.order[j], self.order[pi] = item, other
        self.pos[item], self.pos[other] = j, pi
        self.start[c] = j + 1
        self.start.setdefault(c + 1, j)
        self.count[item] = c + 1

    def top(self, exclude, n=TOP):
        out = []
        for it in self.order:
            if it not in exclude:
                out.append(it)
                if len(out) == n:
                    break
        return out


def popularity_pass(events, chunks):
    """(b) with the chunk snapshot rule, and the exact per-event variant.

    Returns two lists of hit ranks (0-based position in the list, -1 = miss)."""
    pop, hist = Popularity(), collections.defaultdict(set)
    snap, exact = [], []
    for c0, c1 in chunks:
        lists = {}
        for u, _, _, _ in events[c0:c1]:
            if u not in lists:
                lists[u] = pop.top(hist[u]) if hist[u] else []
        for u, i, _, _ in events[c0:c1]:
            lst = lists[u]
            snap.append(lst.index(i) if i in lst else -1)
            lst = pop.top(hist[u]) if hist[u] else []
            exact.append(lst.index(i) if i in lst else -1)
            pop.add(i)
            hist[u].add(i)
    return snap, exact


def next_cut(events, c0, hi, limit):
    """End of the chunk that starts at c0: consecutive events, no user twice, at most limit."""
    seen, k = set(), c0
    while k < hi and k - c0 < limit and events[k][0] not in seen:
        seen.add(events[k][0])
        k += 1
    return k


def make_chunks(events, n, round_events, max_chunk):
    """Consecutive runs of events in which no user occurs twice, cut at every
    multiple of round_events (where the trainer's rounds fall) and at
    max_chunk events.  Every event is thus judged on a list that already
    reflects all earlier events of its user: per user, the evaluation is
    exactly prequential; only other users' events of the same chunk (a
    handful) are not yet in the model or the counts.  (The streaming runs cut
    the same way; after a restart of a stalled daemon they re-align the cuts
    with its trainer, see stream().)"""
    chunks, c0 = [], 0
    while c0 < n:
        c1 = next_cut(events, c0, n, min(max_chunk, round_events - c0 % round_events))
        chunks.append((c0, c1))
        c0 = c1
    return chunks


# ---- streaming a range of events through a daemon ------------------------------

STALL_S = 10          # no progress for this long while events or lists are due: the daemon is stuck
ROUND_TIMEOUT_S = 300  # a training round that takes longer than this is an error
MAX_RESTARTS = 25


def stream(events, lo, hi, spawn, redis, broker, args, steps_per_round, label, history):
    """Produces events[lo:hi] chunk by chunk; returns the hit ranks and a report.

    Per chunk: read ZREVRANGE rec:<user> 0 19 of its users (the test), then
    produce it and wait until each of its users has a list written after the
    event (the daemon marks a user whose history changed, and every marked
    list it writes is counted by vaegan_list_latency_seconds_count), and,
    whenever the trainer has seen round_events new events, until its round is
    published (vaegan_model_step).

    spawn(k) starts the k-th daemon process (0 = the first).  When the daemon
    makes no progress for STALL_S seconds although events or lists are due,
    its threads' stacks are saved (gdb), it is killed and a new one is
    started on the same Redis, broker, consumer group and state directory -
    what systemd's watchdog does to a stuck vaegand.  The new process resumes
    from the last checkpoint, re-reads the uncommitted events (idempotent),
    rebuilds every list; the chunk cuts are then re-aligned with its trainer's
    count of new events.  Every restart is reported.

    history: user -> set of items ingested so far (updated here)."""
    C = args.round_events
    ranks, diag, restarts = [], {}, []
    wait_s = collections.Counter()
    daemon = spawn(0)
    daemon.wait_joined()
    m = daemon.metrics()
    lat_target = m.get("vaegan_list_latency_seconds_count", 0.0)
    step_target = m.get("vaegan_model_step", 0.0)
    stored_target = m.get("vaegan_events_stored_total", 0.0)
    count = 0          # events the trainer has counted since its last round began (lo is a multiple of C)
    chunks = 0
    last_m = m
    t0 = time.monotonic()
    last_report = t0

    def note(kind, where):
        diag[kind] = diag.get(kind, 0) + 1
        diag.setdefault(kind + "_first_event", where)
        diag[kind + "_last_event"] = where

    def restart(reason, where, m):
        nonlocal daemon, lat_target, step_target, stored_target, count
        if len(restarts) >= MAX_RESTARTS:
            die(f"{label}: {len(restarts)} restarts already; giving up. Last reason: {reason}")
        info = {"at_event": where, "reason": reason, "old_process": daemon.name,
                "step_before": m.get("vaegan_model_step")}
        log(f"  {label}: STALL at event {where}: {reason}; restarting vaegand")
        if len(restarts) < 3:
            info["stacks"] = daemon.backtrace()
            log("    " + "\n    ".join(info["stacks"].splitlines()[:1] + [
                l for l in info["stacks"].splitlines() if re.search(r"^#\d+ .* in (vg_|on_|scorer|trainer|st_)", l)]))
        daemon.kill()
        daemon = spawn(len(restarts) + 1)
        daemon.wait_joined()
        # settle: the uncommitted events are read again, every list is rebuilt
        t = time.monotonic()
        prev, since = None, time.monotonic()
        while time.monotonic() - t < 120:
            m = daemon.metrics() or {}
            cur = (m.get("vaegan_events_total"), m.get("vaegan_model_step"), m.get("vaegan_pending_events"),
                   m.get("vaegan_lists_written_total"))
            if cur != prev:
                prev, since = cur, time.monotonic()
            elif (time.monotonic() - since >= 3 and m.get("vaegan_pending_events", 1) == 0
                  and m.get("vaegan_lists_written_total", 0) >= m.get("vaegan_users", 0)):
                break
            time.sleep(0.05)
        else:
            die(f"{label}: the restarted vaegand did not settle in 120 s\n{tail(daemon.name)}")
        m = daemon.metrics()
        redelivered = int(m.get("vaegan_events_stored_total", 0))
        step_loaded = info["step_after_load"] = daemon.first_step
        rounds = int(round((m.get("vaegan_model_step", 0) - step_loaded) / steps_per_round)) if steps_per_round else 0
        count = max(0, redelivered - rounds * C) % C
        info.update(redelivered=redelivered, rounds_from_redelivery=rounds, trainer_count=count,
                    step_after=m.get("vaegan_model_step"), settle_s=round(time.monotonic() - t, 1))
        if steps_per_round and info["step_before"] is not None:
            info["steps_lost"] = info["step_before"] - m.get("vaegan_model_step", 0)
        restarts.append(info)
        lat_target = m.get("vaegan_list_latency_seconds_count", 0)
        step_target = m.get("vaegan_model_step", 0)
        stored_target = m.get("vaegan_events_stored_total", 0)

    c0 = lo
    while c0 < hi:
        c1 = next_cut(events, c0, hi, min(args.max_chunk, C - count))
        assert c1 > c0, (c0, count)
        ev = events[c0:c1]
        users = list(dict.fromkeys(u for u, _, _, _ in ev))
        chunks += 1

        # 1. test: every event of the chunk against its user's current list
        t = time.monotonic()
        lists = dict(zip(users, redis.pipeline([("ZREVRANGE", f"rec:{u}", 0, TOP - 1) for u in users])))
        for u in users:
            lst = lists[u] or []
            if history[u]:
                if not lst:
                    note("known_user_without_list", c0)
                elif len(lst) < TOP:
                    note("short_list", c0)
                if any(x in history[u] for x in lst):
                    note("list_with_history_item", c0)
            elif lst:
                note("new_user_with_list", c0)
        for u, i, _, _ in ev:
            lst = lists[u] or []
            ranks.append(lst.index(i) if i in lst else -1)
        wait_s["read"] += time.monotonic() - t

        # 2. then train: produce the chunk, wait until it is served
        t = time.monotonic()
        broker.produce([(u, i, ts) for u, i, ts, _ in ev])
        wait_s["produce"] += time.monotonic() - t
        t = time.monotonic()
        marked = {u for u, i, _, _ in ev if i not in history[u]}  # a repeated item changes no history
        for u, i, _, _ in ev:
            history[u].add(i)
        lat_target += len(marked)
        stored_target += len(ev)
        count += len(ev)
        need_round = steps_per_round > 0 and count >= C
        if count >= C:  # (without a trainer the count only keeps the cuts the same as in the online run)
            count = 0
        if need_round:
            step_target += steps_per_round
        prev, since = None, time.monotonic()
        while True:
            m = daemon.metrics() or {}
            if m:
                last_m = m
            got = (m.get("vaegan_events_stored_total", 0), m.get("vaegan_list_latency_seconds_count", 0),
                   m.get("vaegan_model_step", 0))
            if got[0] >= stored_target and got[1] >= lat_target and got[2] >= step_target:
                break
            if got != prev:
                prev, since = got, time.monotonic()
            idle = time.monotonic() - since
            if got[0] < stored_target or got[1] < lat_target:
                if idle >= STALL_S:
                    if not m:
                        why = f"the metrics endpoint has not answered for {STALL_S} s"
                    else:
                        why = (f"{'events' if got[0] < stored_target else 'lists'} not served for {STALL_S} s "
                               f"(stored {got[0]:.0f}/{stored_target:.0f}, marked lists {got[1]:.0f}/{lat_target:.0f}, "
                               f"pending {m.get('vaegan_pending_events'):.0f})")
                    restart(why, c0, last_m)
                    break
            elif idle >= ROUND_TIMEOUT_S:
                die(f"{label}: model step stuck at {got[2]} < {step_target} for {ROUND_TIMEOUT_S} s\n"
                    + tail(daemon.name))
            time.sleep(0.0005)
        wait_s["round" if need_round else "serve"] += time.monotonic() - t
        c0 = c1

        now = time.monotonic()
        if now - last_report >= 30 or c0 == hi:
            hits = sum(1 for r in ranks if r >= 0)
            log(f"  {label}: {c0 - lo}/{hi - lo} events, HR@20 so far {hits / max(1, len(ranks)):.4f}, "
                f"model step {step_target:.0f}, {now - t0:.0f} s")
            last_report = now
    m = daemon.metrics()
    report = {
        "chunks": chunks,
        "diagnostics": diag,
        "restarts": restarts,
        "time_s": {k: round(v, 1) for k, v in wait_s.items()},
        "seconds": round(time.monotonic() - t0, 1),
        "model_step_end": m.get("vaegan_model_step"),
        "last_process": {"lists_written": m.get("vaegan_lists_written_total"),
                         "marked_lists_written": m.get("vaegan_list_latency_seconds_count"),
                         "list_latency_mean_ms": round(1000 * m.get("vaegan_list_latency_seconds_sum", 0)
                                                       / max(1, m.get("vaegan_list_latency_seconds_count", 0)), 2),
                         "events_stored": m.get("vaegan_events_stored_total"),
                         "events_invalid": m.get("vaegan_events_invalid_total")},
    }
    report["exit_code"] = daemon.stop()
    return ranks, report


def daemon_conf(path, args, sock, broker, port, state, group, steps):
    sections = {
        "kafka": {"brokers": broker.addr, "topic": "clicks", "group": group, "commit_interval_ms": 100,
                  "option.fetch.wait.max.ms": args.fetch_wait_ms, "option.session.timeout.ms": 6000,
                  "option.auto.offset.reset": "earliest"},
        "redis": {"socket": sock},
        "history": {"max_items": 1000},
        "serve": {"top_n": TOP, "refresh_s": args.refresh_s},
        "state": {"dir": state, "checkpoint_interval_s": args.checkpoint_s},
        "train": {"interval_ms": INT_MAX, "min_new_events": args.round_events, "steps_per_round": steps,
                  "recent_fraction": args.recent_fraction, "threads": args.threads},
        "model": {"variant": args.variant, "batch": args.batch, "anneal_steps": args.anneal_steps,
                  "seed": args.seed},
        "log": {"level": "info"},
        "metrics": {"listen": f"127.0.0.1:{port}"},
    }
    write_conf(path, sections)
    return sections


def spawner(args, exe, tag, redis, broker, state, steps, confs):
    """spawn(k): writes the configuration (a fresh metrics port) and starts vaegand process k."""
    def spawn(k):
        name = f"vaegand-{tag}" + (f"-restart{k}" if k else "")
        path = os.path.join(_tmp, name + ".conf")
        confs.append(daemon_conf(path, args, redis.sock, broker, free_port(), state, f"preq-{tag}", steps))
        d = Daemon(exe["vaegand"], name, path, int(confs[-1]["metrics"]["listen"].rsplit(":", 1)[1]))
        return d
    return spawn


# ---- the three runs ------------------------------------------------------------

def run_online(args, exe, events, n):
    log(f"== (a) online: vaegand from an empty state, {n} events")
    redis = Redis("redis-a")
    broker = Broker(exe["vaegan-mockbroker"], "broker-a", args.partitions, args.producer)
    confs = []
    spawn = spawner(args, exe, "a", redis, broker, os.path.join(_tmp, "state-a"), args.steps, confs)
    history = collections.defaultdict(set)
    ranks, info = stream(events, 0, n, spawn, redis, broker, args, args.steps, "(a)", history)
    info["log"] = scan_logs("vaegand-a")
    info["config"] = confs[0]
    broker.close()
    redis.close()
    return ranks, info


def run_frozen(args, exe, events, mid, n, epochs, tag):
    log(f"== (c{tag}) frozen: --replay of events [0, {mid}) for {epochs} epochs, then serve [{mid}, {n})")
    redis = Redis(f"redis-c{tag}")
    state = os.path.join(_tmp, f"state-c{tag}")
    first = os.path.join(_tmp, f"first_half{tag}.data")
    with open(first, "w") as f:
        for u, i, ts, r in events[:mid]:
            f.write(f"{u}\t{i}\t{r}\t{ts}\n")
    broker = Broker(exe["vaegan-mockbroker"], f"broker-c{tag}", args.partitions, args.producer)
    cpath = os.path.join(_tmp, f"c{tag}-replay.conf")
    replay_conf = daemon_conf(cpath, args, redis.sock, broker, free_port(), state, f"preq-c{tag}", args.steps)
    t = time.monotonic()
    out = open(os.path.join(_tmp, f"replay-c{tag}.out"), "w")
    p = start([exe["vaegand"], "-c", cpath, "--replay", first, "--format", "ml100k", "--epochs", str(epochs)],
              f"replay-c{tag}", stdout=out)
    out.close()
    while p.poll() is None:
        time.sleep(0.2)
    if p.returncode != 0:
        die(f"vaegand --replay exited with {p.returncode}:\n{tail(f'replay-c{tag}')}")
    with open(os.path.join(_tmp, f"replay-c{tag}.out")) as f:
        summary = json.loads(f.read().strip().splitlines()[-1])
    replay_s = time.monotonic() - t
    log(f"  replay: {summary}")

    confs = []
    spawn0 = spawner(args, exe, f"c{tag}", redis, broker, state, 0, confs)

    def spawn(k):  # the start rebuilds every known user's list in the background: let it finish
        d = spawn0(k)
        if k == 0:
            d.wait_joined()
            # (vaegand writes every list twice at a start, the first time possibly by popularity before
            # its scorer has the loaded model: wait until both sweeps are over)
            t, prev, since = time.monotonic(), None, time.monotonic()
            while time.monotonic() - t < 120:
                cur = d.metric("vaegan_lists_written_total")
                if cur != prev:
                    prev, since = cur, time.monotonic()
                elif cur >= summary["users"] and time.monotonic() - since >= 1.5:
                    break
                time.sleep(0.05)
            else:
                die(f"{d.name}: the lists of the {summary['users']} users were not rebuilt in 120 s")
        return d
    history = collections.defaultdict(set)
    for u, i, _, _ in events[:mid]:
        history[u].add(i)
    ranks, info = stream(events, mid, n, spawn, redis, broker, args, 0, f"(c{tag})", history)
    info["log"] = scan_logs(f"vaegand-c{tag}")
    info["replay_log"] = scan_logs(f"replay-c{tag}")
    info["replay"] = summary
    info["replay_s"] = round(replay_s, 1)
    info["epochs"] = epochs
    info["config"] = confs[0]
    info["replay_config"] = replay_conf
    broker.close()
    redis.close()
    return ranks, info


# ---- figures -------------------------------------------------------------------

def hr(ranks, k=TOP):
    return sum(1 for r in ranks if 0 <= r < k) / len(ranks) if ranks else float("nan")


def block_bootstrap_diff(x, y, block, reps=2000, seed=0):
    """95 % interval of mean(x) - mean(y) (hits as 0/1), resampling blocks of consecutive events."""
    hx = [1 if r >= 0 else 0 for r in x]
    hy = [1 if r >= 0 else 0 for r in y]
    blocks = [(sum(hx[s:s + block]) - sum(hy[s:s + block]), len(hx[s:s + block])) for s in range(0, len(hx), block)]
    rng = random.Random(seed)
    diffs = []
    for _ in range(reps):
        smp = [blocks[rng.randrange(len(blocks))] for _ in blocks]
        diffs.append(sum(a for a, _ in smp) / sum(b for _, b in smp))
    diffs.sort()
    return [round(diffs[int(0.025 * reps)], 4), round(diffs[int(0.975 * reps) - 1], 4)]


def plot(path, windows, mid, n, frozen_tags, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5), dpi=120)
    xs = [w["end"] for w in windows]
    ax.plot(xs, [w["a_online"] for w in windows], "o-", color="tab:blue", label="(a) online vaegand")
    ax.plot(xs, [w["b_popular"] for w in windows], "s-", color="tab:gray", label="(b) popularity (all events so far)")
    styles = ["^-", "v--", "d-."]
    for k, tag in enumerate(frozen_tags):
        pts = [(w["end"], w[f"c_frozen{tag}"]) for w in windows if w.get(f"c_frozen{tag}") is not None]
        lbl = windows[0].get(f"_label_c{tag}", f"(c{tag}) frozen")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[k % 3], color=["tab:red", "tab:orange", "tab:brown"][k % 3],
                label=lbl)
    ax.axvline(mid, color="k", lw=0.8, ls="--")
    ax.text(mid, ax.get_ylim()[1], " 50 %", va="top", ha="left", fontsize=9)
    ax.set_xlabel("events (MovieLens-100K in timestamp order); point = HR@20 over the window ending there")
    ax.set_ylabel("HR@20 (item of the next event in the user's top 20)")
    ax.set_xlim(0, n)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---- main ----------------------------------------------------------------------

def find_binary(build, name):
    p = os.path.join(build, name)
    if os.access(p, os.X_OK):
        return p
    for d, _, files in os.walk(build):
        if name in files and os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    die(f"{name} not found under {build}: build it (scripts/prequential.sh does)")


def main():
    global _tmp, _keep_tmp
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("VAEGAN_ML100K",
                                                     os.path.join(ROOT, "..", "shared", "data", "ml-100k", "u.data")),
                    help="MovieLens-100K u.data (default $VAEGAN_ML100K or ../shared/data/ml-100k/u.data)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-preq"), help="build dir with vaegand, vaegan-mockbroker")
    ap.add_argument("--out", help="output dir (default docs/prequential; with --quick build-preq/prequential-quick)")
    ap.add_argument("--quick", action="store_true", help="first 20,000 events only, windows of 2,000")
    ap.add_argument("--events", type=int, help="use only the first N events")
    ap.add_argument("--min-rating", type=int, default=1, help="ratings below are dropped (default 1: all)")
    ap.add_argument("--round-events", type=int, default=100,
                    help="online trainer: one round per this many events (train.min_new_events; default 100)")
    ap.add_argument("--max-chunk", type=int, default=100,
                    help="at most this many events produced at once (a chunk never holds a user twice)")
    ap.add_argument("--fetch-wait-ms", type=int, default=2,
                    help="kafka.option.fetch.wait.max.ms: the mock answers a fetch only after it (default 2)")
    ap.add_argument("--producer", choices=("librdkafka", "kcat"), default="librdkafka",
                    help="librdkafka through ctypes (default, one process) or kcat per chunk (slow)")
    ap.add_argument("--window", type=int, help="events per HR window (default 5000; quick 2000)")
    ap.add_argument("--steps", type=int, default=2, help="online trainer: mini-batch steps per round (default 2)")
    ap.add_argument("--batch", type=int, default=256, help="model.batch (default 256)")
    ap.add_argument("--anneal-steps", type=int, help="model.anneal_steps (default: the online steps at 50 %%)")
    ap.add_argument("--variant", default="avb+d+c")
    ap.add_argument("--recent-fraction", type=float, default=0.5)
    ap.add_argument("--refresh-s", type=int, default=5, help="serve.refresh_s (default 5)")
    ap.add_argument("--checkpoint-s", type=int, default=10,
                    help="state.checkpoint_interval_s (default 10: a restart after a stall loses little training)")
    ap.add_argument("--threads", type=int, default=1, help="train.threads (default 1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--frozen-epochs", default="match,100",
                    help="comma list of (c) runs: 'match' = as many steps as (a) had at 50 %%, or a number "
                         "(default: match,100)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, configs, state)")
    args = ap.parse_args()
    _keep_tmp = args.keep_tmp

    for sig in (signal.SIGTERM, signal.SIGHUP):  # atexit does not run on a fatal signal
        if signal.getsignal(sig) != signal.SIG_IGN:  # (nohup: SIGHUP stays ignored)
            signal.signal(sig, lambda signum, frame: die(f"stopped by signal {signum}"))
    for tool in ("redis-server", "kcat"):
        if not shutil.which(tool):
            die(f"{tool} not on PATH (scripts/deps.sh installs it)")
    exe = {name: find_binary(args.build, name) for name in ("vaegand", "vaegan-mockbroker")}
    if not os.path.isfile(args.data):
        die(f"MovieLens-100K not found at {args.data} (set VAEGAN_ML100K or --data)")
    out = args.out or (os.path.join(args.build, "prequential-quick") if args.quick
                       else os.path.join(ROOT, "docs", "prequential"))
    window = args.window or (2000 if args.quick else 5000)

    events = load_events(args.data, args.min_rating)
    n = args.events or (20000 if args.quick else len(events))
    n = min(n, len(events))
    events = events[:n]
    mid = (n // 2) // args.round_events * args.round_events  # a chunk boundary
    steps_at_mid = (mid // args.round_events) * args.steps
    chunks = make_chunks(events, n, args.round_events, args.max_chunk)
    if args.anneal_steps is None:
        args.anneal_steps = max(1, steps_at_mid)
    users_first = len({u for u, _, _, _ in events[:mid]})
    steps_per_epoch = math.ceil(users_first / args.batch)
    frozen = []
    for k, e in enumerate(x.strip() for x in args.frozen_epochs.split(",") if x.strip()):
        ep = math.ceil(steps_at_mid / steps_per_epoch) if e == "match" else int(e)
        frozen.append(("" if k == 0 else str(k + 1), ep, e))

    _tmp = tempfile.mkdtemp(prefix="vaegan-preq-")
    atexit.register(_cleanup)
    os.makedirs(out, exist_ok=True)
    log(f"prequential: {n} events ({len({u for u, _, _, _ in events})} users, "
        f"{len({i for _, i, _, _ in events})} items), {len(chunks)} chunks, midpoint {mid}; temp {_tmp}")
    t_all = time.monotonic()

    log("== (b) popularity (computed here)")
    b_snap, b_exact = popularity_pass(events, chunks)
    a_ranks, a_info = run_online(args, exe, events, n)
    c_runs = []
    for tag, ep, spec in frozen:
        ranks, info = run_frozen(args, exe, events, mid, n, ep, tag)
        info["spec"] = spec
        c_runs.append((tag, ranks, info))
    total_s = time.monotonic() - t_all

    # figures
    windows = []
    for s in range(0, n, window):
        e = min(s + window, n)
        w = {"start": s, "end": e, "a_online": round(hr(a_ranks[s:e]), 4),
             "b_popular": round(hr(b_snap[s:e]), 4), "b_popular_exact": round(hr(b_exact[s:e]), 4)}
        for tag, ranks, info in c_runs:
            w[f"c_frozen{tag}"] = round(hr(ranks[s - mid:e - mid]), 4) if s >= mid else None
        windows.append(w)

    def means(lo, hi, k):
        r = {"a_online": round(hr(a_ranks[lo:hi], k), 4), "b_popular": round(hr(b_snap[lo:hi], k), 4),
             "b_popular_exact": round(hr(b_exact[lo:hi], k), 4)}
        if lo >= mid:
            for tag, ranks, info in c_runs:
                r[f"c_frozen{tag}"] = round(hr(ranks[lo - mid:hi - mid], k), 4)
        return r

    second = {"HR@20": means(mid, n, 20), "HR@10": means(mid, n, 10)}
    compare = {"a_minus_b": block_bootstrap_diff(a_ranks[mid:], b_snap[mid:], 1000)}
    for tag, ranks, info in c_runs:
        compare[f"a_minus_c{tag}"] = block_bootstrap_diff(a_ranks[mid:], ranks, 1000)
    result = {
        "what": "prequential HR@20 of vaegand on MovieLens-100K (see tools/prequential.py)",
        "data": {"path": os.path.abspath(args.data), "events": n, "min_rating": args.min_rating,
                 "order": "timestamp, then file order", "midpoint": mid,
                 "users_first_half": users_first},
        "protocol": {"chunks": len(chunks), "max_chunk": args.max_chunk, "top": TOP, "window": window,
                     "chunk_rule": "consecutive events, no user twice in a chunk, cut at every multiple of "
                                   f"{args.round_events} events and at {args.max_chunk} events",
                     "pacing": f"event-paced: one trainer round of {args.steps} steps per {args.round_events} "
                               f"events (train.min_new_events = {args.round_events}, train.interval_ms = {INT_MAX}); "
                               "the driver waits for each round before it goes on",
                     "producer": args.producer, "fetch_wait_max_ms": args.fetch_wait_ms,
                     "no_list_rule": "an event whose user has no earlier event counts as a miss for every method",
                     "snapshot_rule": "lists read before the chunk is produced (b uses the same snapshot)",
                     "frozen": [{"tag": t, "epochs": ep, "spec": s} for t, ep, s in frozen],
                     "online_steps_at_midpoint": steps_at_mid, "replay_steps_per_epoch": steps_per_epoch},
        "second_half_mean": second,
        "first_half_mean": {"HR@20": means(0, mid, 20)},
        "whole_stream_mean": {"HR@20": means(0, n, 20)},
        "second_half_diff_95ci_block_bootstrap_1000_events": compare,
        "windows": windows,
        "runs": {"a": a_info, **{f"c{tag}": info for tag, _, info in c_runs}},
        "wall_s": round(total_s, 1),
    }
    with open(os.path.join(out, "prequential.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "prequential.csv"), "w") as f:
        cols = ["start", "end", "a_online", "b_popular", "b_popular_exact"] + [f"c_frozen{t}" for t, _, _ in c_runs]
        f.write(",".join(cols) + "\n")
        for w in windows:
            f.write(",".join("" if w.get(c) is None else str(w[c]) for c in cols) + "\n")
    for tag, ranks, info in c_runs:
        windows[0][f"_label_c{tag}"] = f"(c{tag}) frozen at 50 % ({info['epochs']} epochs, {info['replay']['step']} steps)"
    plot(os.path.join(out, "prequential.png"), windows, mid, n, [t for t, _, _ in c_runs],
         f"vaegand prequential HR@20, MovieLens-100K ({n} events, online: {args.steps} steps\nper {args.round_events} events, "
         f"batch {args.batch})")
    for w in windows:
        for k in [k for k in w if k.startswith("_")]:
            del w[k]

    log("")
    log(f"HR@20 per window of {window} events:")
    hdr = f"{'events':>15} {'(a) online':>11} {'(b) popular':>12} {'(b) exact':>10}" + \
        "".join(f" {'(c' + t + ') frozen':>11}" for t, _, _ in c_runs)
    log(hdr)
    for w in windows:
        log(f"{w['start']:>7}-{w['end']:<7} {w['a_online']:>11.4f} {w['b_popular']:>12.4f} {w['b_popular_exact']:>10.4f}"
            + "".join(f" {w[f'c_frozen{t}']:>11.4f}" if w[f"c_frozen{t}"] is not None else f" {'':>11}"
                      for t, _, _ in c_runs))
    s = second["HR@20"]
    log(f"second half [{mid}, {n}) mean HR@20: (a) {s['a_online']:.4f}  (b) {s['b_popular']:.4f}"
        f" (exact {s['b_popular_exact']:.4f})  "
        + "  ".join(f"(c{t}) {s[f'c_frozen{t}']:.4f}" for t, _, _ in c_runs))
    log(f"difference, 95 % block-bootstrap interval: {compare}")
    log(f"online model steps: {a_info['model_step_end']:.0f}; wall {total_s:.0f} s; outputs in {out}")
    for name, info in [("a", a_info)] + [(f"c{t}", i) for t, _, i in c_runs]:
        logs = {k: v["counts"] for k, v in info["log"].items() if v["counts"]}
        if info["diagnostics"] or logs:
            log(f"note ({name}): diagnostics {info['diagnostics']}; warnings/errors in logs {logs}")
        if info["restarts"]:
            log(f"note ({name}): vaegand stalled and was restarted {len(info['restarts'])} times, at events "
                f"{[r['at_event'] for r in info['restarts']]}; steps lost "
                f"{[r.get('steps_lost') for r in info['restarts']]} (see prequential.json, runs.{name}.restarts)")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        die("interrupted")
