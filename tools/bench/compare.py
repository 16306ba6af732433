#!/usr/bin/python3
"""Side-by-side benchmark: Starling next to Mosquitto, same machine, same run.

Starts each broker on a free loopback port with comparable settings (no
persistence fsync, the same inflight / queue limits), drives it with
starling-bench, and measures the broker process from /proc: peak resident
memory and CPU seconds per scenario. A fresh broker is started for every
scenario so that one scenario's memory does not leak into the next.

Scenarios, each at QoS 0 and QoS 1, in two variants:
  max rate   publishers send as fast as TCP (QoS 0) or their ack window (QoS 1)
             allows: the delivered messages/s is the throughput figure; latency
             there is mostly queueing.
  fixed rate a moderate offered load both brokers sustain: the latency figures.
  fan-in     many publishers, one subscriber (wildcard)
  fan-out    one publisher, many subscribers
  p2p        publisher i -> subscriber i, many pairs
plus a QoS 0 burst from independent clients (4 `mosquitto_pub -l`
publishers, 200,000 lines each as fast as they can, to one `mosquitto_sub`,
wildcard), the same fan-in 4:1 at max rate from starling-bench, 10,000 idle
connections (resident memory per connection) and a connect rate run.

Every message row reports messages delivered per second at the subscribers
and the delivered share (received / published; 100 % minus the loss), not
what the broker took in.

Writes results.md, results.csv, results.png and the raw starling-bench JSON
to the output directory. Uses /usr/bin/python3 (Debian's matplotlib).

  /usr/bin/python3 tools/bench/compare.py --out bench-results
  /usr/bin/python3 tools/bench/compare.py --long           # 30 s per scenario
"""

import argparse
import csv
import datetime
import glob
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Broker limits applied to both brokers.
MAX_INFLIGHT = 20
MAX_QUEUED = 1000
MAX_CONNECTIONS = 20000
DRAIN_MAX_S = 8.0


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def process_cpu_s(pid):
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- brokers ------------------------------------------------------------------


class Broker:
    """One broker process on a free loopback port, measured through /proc."""

    name = "?"

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.port = None
        self.logfile = None
        self.peak_kb = 0
        self._sampling = False
        self._sampler = None

    def command(self):
        raise NotImplementedError

    def start(self):
        self.port = free_port()
        cmd = self.command()
        self.logfile = open(os.path.join(self.workdir, f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logfile, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=raise_nofile)
        if not wait_port(self.port, self.proc):
            self.stop()
            return False
        return True

    def stop(self):
        self.sample_stop()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.logfile:
            self.logfile.close()
            self.logfile = None

    def rss_kb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def cpu_s(self):
        return process_cpu_s(self.proc.pid)

    def sample_start(self):
        self.peak_kb = self.rss_kb()
        self._sampling = True

        def loop():
            while self._sampling:
                self.peak_kb = max(self.peak_kb, self.rss_kb())
                time.sleep(0.05)

        self._sampler = threading.Thread(target=loop, daemon=True)
        self._sampler.start()

    def sample_stop(self):
        self._sampling = False
        if self._sampler:
            self._sampler.join()
            self._sampler = None


class Mosquitto(Broker):
    name = "mosquitto"

    def __init__(self, workdir, binary):
        super().__init__(workdir)
        self.binary = binary

    def listener_lines(self):
        return f"listener {self.port} 127.0.0.1\n"

    def command(self):
        conf = os.path.join(self.workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(self.listener_lines() + f"""allow_anonymous true
persistence false
max_inflight_messages {MAX_INFLIGHT}
max_queued_messages {MAX_QUEUED}
max_connections {MAX_CONNECTIONS}
log_dest stderr
log_type error
connection_messages false
""")
        return [self.binary, "-c", conf]

    def version(self):
        try:
            out = subprocess.run([self.binary, "-h"], capture_output=True, text=True, timeout=5)
            first = (out.stdout or out.stderr).splitlines()[0]
            return first.replace("mosquitto version", "Mosquitto").strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "Mosquitto"


class Starling(Broker):
    name = "starling"

    def __init__(self, workdir, binary):
        super().__init__(workdir)
        self.binary = binary
        self.data_root = "/dev/shm" if os.path.isdir("/dev/shm") else workdir

    def command(self):
        # The data directory lives in tmpfs: Starling's log writes are synced,
        # tmpfs makes the sync free, matching Mosquitto's persistence false.
        data = tempfile.mkdtemp(prefix="starling-bench-", dir=self.data_root)
        self.data_dir = data
        return [self.binary, "-p", str(self.port), "--bind", "127.0.0.1", "--data-dir", data,
                "--set", f"max_inflight={MAX_INFLIGHT}", "--set", f"max_queued={MAX_QUEUED}",
                "--set", f"max_connections={MAX_CONNECTIONS}",
                # no admin API: its default port may be another broker's
                "--set", "admin_listen=off"]

    def stop(self):
        super().stop()
        if getattr(self, "data_dir", None):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def version(self):
        try:
            out = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                                 timeout=5)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "Starling"


# --- starling-bench processes ---------------------------------------------------


RECV_RE = re.compile(r"\| recv (\d+) ")


class Bench:
    """A starling-bench process; stderr is watched for the end of its connection phase."""

    def __init__(self, binary, mode, args, rawdir, tag):
        self.cmd = [binary, mode, "--json"] + [str(a) for a in args]
        self.tag = tag
        self.rawdir = rawdir
        self.ready = threading.Event()
        self.stderr_lines = []
        self.recv = 0  # from the progress lines, once a second
        self.recv_changed = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True,
                                     preexec_fn=raise_nofile)
        self._out = []
        self._t_out = threading.Thread(target=lambda: self._out.append(self.proc.stdout.read()),
                                       daemon=True)
        self._t_err = threading.Thread(target=self._watch, daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _watch(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            m = RECV_RE.search(line)
            if m and int(m.group(1)) != self.recv:
                self.recv = int(m.group(1))
                self.recv_changed = time.monotonic()
            if "connection phase done" in line:
                self.ready.set()
        self.ready.set()  # exited: nobody waits forever

    def wait_ready(self, timeout=60):
        return self.ready.wait(timeout) and self.proc.poll() is None

    def interrupt(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def result(self, timeout=120):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._t_out.join()
        self._t_err.join()
        text = self._out[0] if self._out else ""
        with open(os.path.join(self.rawdir, self.tag + ".json"), "w") as f:
            f.write(text)
        with open(os.path.join(self.rawdir, self.tag + ".stderr"), "w") as f:
            f.write(" ".join(self.cmd) + "\n" + "".join(self.stderr_lines))
        try:
            return json.loads(text)
        except ValueError:
            raise RuntimeError(f"{self.tag}: no JSON summary (exit {self.proc.returncode}): "
                               + "".join(self.stderr_lines[-5:]))


def drain(subs):
    """Lets queued messages drain: stops the subscriber processes once none has
    received anything for two progress lines, or after DRAIN_MAX_S; returns
    their JSON summaries."""
    drain_until = time.monotonic() + DRAIN_MAX_S
    while time.monotonic() < drain_until and any(s.proc.poll() is None for s in subs):
        if all(time.monotonic() - s.recv_changed > 2.2 for s in subs):
            break
        time.sleep(0.1)
    for s in subs:
        s.interrupt()
    return [s.result() for s in subs]


# --- scenarios ------------------------------------------------------------------


def message_scenarios(n, fanout_subs):
    """(id, label, pattern, qos, variant, pub args, sub args). n = clients per side."""
    rows = []
    for qos in (0, 1):
        window = ["-F", "10"] if qos else []
        pats = [
            ("fanin", f"fan-in {n}:1", ["-c", n, "-t", "fanin/%i"], ["-c", 1, "-t", "fanin/+"],
             ["-I", 20]),  # n x 50/s
            ("fanout", f"fan-out 1:{fanout_subs}", ["-c", 1, "-t", "fanout/all"],
             ["-c", fanout_subs, "-t", "fanout/all"], ["-I", 10]),  # 100/s x subs
            ("p2p", f"p2p {n} pairs", ["-c", n, "-t", "p2p/%i"], ["-c", n, "-t", "p2p/%i"],
             ["-I", 20]),
        ]
        if qos == 0:
            rows.append(("fanin4_q0_max", "fan-in 4:1 QoS 0 max rate", "fanin", 0, "max",
                         ["-c", 4, "-t", "fanin/%i", "-I", 0], ["-c", 1, "-t", "fanin/+"]))
        for pid, label, pub, sub, lat_interval in pats:
            rows.append((f"{pid}_q{qos}_max", f"{label} QoS {qos} max rate", pid, qos, "max",
                         pub + ["-I", 0] + window, sub))
            rows.append((f"{pid}_q{qos}_fixed", f"{label} QoS {qos} fixed rate", pid, qos,
                         "fixed", pub + lat_interval + window, sub))
    return rows


def run_messages(broker, bench, scen, duration, rawdir):
    sid, label, pattern, qos, variant, pub_args, sub_args = scen
    common = ["-h", "127.0.0.1", "-p", broker.port, "-q", qos, "-i", 0]
    cpu0 = broker.cpu_s()
    broker.sample_start()
    sub = Bench(bench, "sub", common + sub_args + ["-d", duration + 120], rawdir,
                f"{broker.name}-{sid}-sub")
    if not sub.wait_ready():
        sub.interrupt()
        raise RuntimeError(f"{sid}: subscribers did not get ready: "
                           + "".join(sub.stderr_lines[-3:]))
    pub = Bench(bench, "pub", common + pub_args + ["-w", "-d", duration, "-s", 256], rawdir,
                f"{broker.name}-{sid}-pub")
    p = pub.result(timeout=duration + 120)
    s = drain([sub])[0]
    broker.sample_stop()
    lat = s["latency_us"]
    return {
        "id": sid, "scenario": label, "pattern": pattern, "qos": qos, "variant": variant,
        "rate": s["receive"]["rate_per_s"], "unit": "msg/s",
        "p50_ms": lat["p50"] / 1000.0, "p99_ms": lat["p99"] / 1000.0,
        "rss_mb": broker.peak_kb / 1024.0, "kb_per_conn": None,
        "cpu_s": broker.cpu_s() - cpu0,
        "sent": p["publish"]["sent"], "recv": s["receive"]["count"],
        "expected": p["publish"]["sent"] * (int(sub_args[1]) if pattern == "fanout" else 1),
    }


CLI_PUBLISHERS = 4
CLI_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
CLI_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"


def run_cli_burst(broker, lines, rawdir):
    """4 mosquitto_pub -l, `lines` lines each as fast as they can, to one
    mosquitto_sub on burst/+ (QoS 0, MQTT 3.1.1, 100-byte lines): independent
    clients, the way a user would try it. The rate is lines received / the
    time from the publishers' start to the last line received."""
    path = os.path.join(broker.workdir, f"burst-{lines}.txt")
    if not os.path.exists(path):
        with open(path, "w") as f:
            for i in range(lines):
                f.write(f"{i:09d} " + "x" * 90 + "\n")
    host = ["-h", "127.0.0.1", "-p", str(broker.port), "-q", "0"]
    cpu0 = broker.cpu_s()
    broker.sample_start()
    sub = subprocess.Popen([CLI_SUB] + host + ["-t", "burst/+"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    state = {"count": 0, "ready": False, "last": None}

    def read():
        for line in sub.stdout:
            if line.startswith(b"ready"):
                state["ready"] = True
            else:
                state["count"] += 1
                state["last"] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not state["ready"] and time.monotonic() < deadline:
        subprocess.run([CLI_PUB] + host + ["-t", "burst/ready", "-m", "ready"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        time.sleep(0.2)
    if not state["ready"]:
        sub.kill()
        broker.sample_stop()
        raise RuntimeError("cli burst: mosquitto_sub never got its readiness probe")
    t0 = time.monotonic()
    pubs = []
    for i in range(CLI_PUBLISHERS):
        with open(path, "rb") as f:
            pubs.append(subprocess.Popen([CLI_PUB] + host + ["-t", f"burst/{i}", "-l"], stdin=f,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in pubs:
        try:
            p.wait(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
    t_pub = time.monotonic() - t0
    expected = lines * CLI_PUBLISHERS
    seen, since = -1, time.monotonic()
    while state["count"] < expected and time.monotonic() - since < 3.0:
        if state["count"] != seen:
            seen, since = state["count"], time.monotonic()
        time.sleep(0.1)
    sub.terminate()
    sub.wait(timeout=10)
    reader.join(timeout=10)
    broker.sample_stop()
    recv = state["count"]
    window = (state["last"] - t0) if state["last"] else 0.0
    with open(os.path.join(rawdir, f"{broker.name}-cli_fanin4_q0.txt"), "w") as f:
        f.write(f"publishers {CLI_PUBLISHERS} x {lines} lines, published in {t_pub:.3f} s, "
                f"received {recv} of {expected}, last after {window:.3f} s\n")
    return {
        "id": "cli_fanin4_q0", "pattern": "fanin", "qos": 0, "variant": "burst",
        "scenario": f"mosquitto_pub -l x{CLI_PUBLISHERS} ({lines:,} lines each) -> mosquitto_sub, "
                    "QoS 0 burst",
        "rate": recv / window if window > 0 else 0.0, "unit": "msg/s", "p50_ms": None,
        "p99_ms": None, "rss_mb": broker.peak_kb / 1024.0, "kb_per_conn": None,
        "cpu_s": broker.cpu_s() - cpu0, "sent": expected, "recv": recv, "expected": expected,
    }


def run_idle(broker, bench, conns, rawdir, conn=None, kind=""):
    """conns connections held: the broker's RSS per connection. conn: the
    connection options (default plain TCP to the broker); kind names them in
    the row ("TLS")."""
    cpu0 = broker.cpu_s()
    base_kb = broker.rss_kb()
    broker.sample_start()
    conn = conn or ["-h", "127.0.0.1", "-p", broker.port]
    c = Bench(bench, "conn", conn + ["-c", conns, "-i", 0, "-d", 600], rawdir,
              f"{broker.name}-{kind.lower() + '-' if kind else ''}idle")
    if not c.wait_ready(timeout=300):
        c.interrupt()
        raise RuntimeError("idle: connections did not finish: " + "".join(c.stderr_lines[-3:]))
    time.sleep(1.0)  # let the broker settle
    held_kb = broker.rss_kb()
    c.interrupt()
    r = c.result()
    broker.sample_stop()
    n = r["connect"]["connected"]
    return {
        "id": "idle", "scenario": f"{conns} idle {kind + ' ' if kind else ''}connections", "pattern": "idle", "qos": "",
        "variant": "", "rate": None, "unit": "", "p50_ms": None, "p99_ms": None,
        "rss_mb": held_kb / 1024.0,
        "kb_per_conn": (held_kb - base_kb) / n if n else None,
        "cpu_s": broker.cpu_s() - cpu0, "sent": "", "recv": n, "expected": conns,
    }


def run_connect_rate(broker, bench, conns, rawdir, inflight=50, sid="connect"):
    cpu0 = broker.cpu_s()
    broker.sample_start()
    c = Bench(bench, "conn", ["-h", "127.0.0.1", "-p", broker.port, "-c", conns, "-i", 0,
                              "--max-connecting", inflight, "-d", 600], rawdir,
              f"{broker.name}-{sid}")
    if not c.wait_ready(timeout=120):
        c.interrupt()
        raise RuntimeError("connect: did not finish: " + "".join(c.stderr_lines[-3:]))
    c.interrupt()
    r = c.result()
    broker.sample_stop()
    t = r["connect"]["time_us"]
    return {
        "id": sid, "scenario": f"connect rate ({conns} clients, {inflight} in flight)",
        "pattern": "connect", "qos": "", "variant": "", "rate": r["connect"]["rate_per_s"],
        "unit": "conn/s", "p50_ms": t["p50"] / 1000.0, "p99_ms": t["p99"] / 1000.0,
        "rss_mb": broker.peak_kb / 1024.0, "kb_per_conn": None,
        "cpu_s": broker.cpu_s() - cpu0, "sent": "", "recv": r["connect"]["connected"],
        "expected": conns,
    }


def run_plan(make_broker, plan, only, run_one, summary):
    """Runs plan, a list of (id, label, what), each against a fresh broker
    from make_broker: run_one(broker, what) returns the row; a RuntimeError
    becomes a row with "error". Ids not in only (when given) are skipped.
    Returns the rows, each naming its broker."""
    rows = []
    for sid, label, what in plan:
        if only and sid not in only:
            continue
        broker = make_broker()
        if not broker.start():
            broker.stop()
            raise RuntimeError(f"{broker.name} did not start (see {broker.workdir})")
        try:
            log(f"  {broker.name}: {sid} ...")
            row = run_one(broker, what)
        except RuntimeError as e:
            log(f"  {broker.name}: {sid} failed: {e}")
            row = {"id": sid, "scenario": label, "error": str(e)}
        finally:
            broker.stop()
        row["broker"] = broker.name
        rows.append(row)
        if "error" not in row:
            log("    " + summary(row))
    return rows


def run_broker(make_broker, bench, args, rawdir, only):
    """All scenarios against fresh instances of one broker. Returns rows."""
    scenarios = message_scenarios(args.clients, args.fanout_subs)
    plan = ([("cli_fanin4_q0", "cli_fanin4_q0", ("cli", None))] + [(s[0], s[1], ("msg", s)) for s in scenarios]
            + [("idle", "idle", ("idle", None)), ("connect", "connect", ("connect", 50)),
               ("connect_500", "connect_500", ("connect", 500))])

    def run_one(broker, what):
        kind, scen = what
        if kind == "msg":
            return run_messages(broker, bench, scen, args.duration, rawdir)
        if kind == "cli":
            return run_cli_burst(broker, args.cli_lines, rawdir)
        if kind == "idle":
            return run_idle(broker, bench, args.idle, rawdir)
        return run_connect_rate(broker, bench, args.connects, rawdir, scen,
                                "connect" if scen == 50 else f"connect_{scen}")

    return run_plan(make_broker, plan, only, run_one, summary_line)


def summary_line(r):
    parts = []
    if r.get("rate") is not None:
        parts.append(f"{r['rate']:.0f} {r['unit']}")
    if r.get("p50_ms") is not None:
        parts.append(f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms")
    if r.get("kb_per_conn") is not None:
        parts.append(f"{r['kb_per_conn']:.2f} KiB/conn")
    parts.append(f"RSS {r['rss_mb']:.1f} MB CPU {r['cpu_s']:.2f} s")
    if r.get("expected"):
        parts.append(f"delivered {r['recv']}/{r['expected']} ({delivered(r)})")
    return ", ".join(parts)


# --- reports --------------------------------------------------------------------

COLUMNS = [("rate", "delivered/s", "{:.0f}"), ("p50_ms", "p50 ms", "{:.2f}"),
           ("p99_ms", "p99 ms", "{:.2f}"), ("rss_mb", "RSS MB", "{:.1f}"),
           ("kb_per_conn", "KiB/conn", "{:.2f}"), ("cpu_s", "CPU s", "{:.2f}")]


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(v, f):
    return "" if v is None or v == "" else f.format(v)


def delivered_pct(r):
    if r.get("expected"):
        return 100.0 * r["recv"] / r["expected"]
    return None


def delivered(r):
    v = delivered_pct(r)
    return "" if v is None else f"{v:.1f}%"


def by_id(rows):
    out = {}
    for r in rows:
        out.setdefault(r["id"], {})[r["broker"]] = r
    return out


def labelled(entry, brokers):
    """(label, broker, row) for each broker that has a row in entry (one
    scenario's rows by broker); the label (the scenario) on the first only."""
    label = next(iter(entry.values()))["scenario"]
    for k, b in enumerate(b for b in brokers if b in entry):
        yield (label if k == 0 else ""), b, entry[b]


def write_markdown(path, rows, brokers, meta):
    ids = list(dict.fromkeys(r["id"] for r in rows))
    table = by_id(rows)
    with open(path, "w") as f:
        f.write(f"# Starling vs Mosquitto, {meta['date']}\n\n")
        f.write(f"- machine: {meta['machine']}\n")
        for b in brokers:
            f.write(f"- {b}: {meta['versions'].get(b, '')}\n")
        f.write(f"- command: `{meta['command']}` (load from `{meta['bench']}`)\n")
        f.write(f"- {meta['notes']}\n")
        if meta.get("alone"):
            f.write(f"- **{meta['alone']}**\n")
        f.write("\n| scenario | broker | " + " | ".join(c[1] for c in COLUMNS)
                + " | delivered |\n")
        f.write("|---|---|" + "---:|" * len(COLUMNS) + "---:|\n")
        for sid in ids:
            entry = table[sid]
            for name, b, r in labelled(entry, brokers):
                if "error" in r:
                    f.write(f"| {name} | {b} | failed: {r['error'][:80]} |"
                            + " |" * len(COLUMNS) + "\n")
                    continue
                f.write(f"| {name} | {b} | "
                        + " | ".join(fmt(r.get(k), fm) for k, _, fm in COLUMNS)
                        + f" | {delivered(r)} |\n")
            if len(brokers) == 2 and all(b in entry and "error" not in entry[b]
                                         for b in brokers):
                s, m = entry["starling"], entry["mosquitto"]
                f.write("| | **Starling / Mosquitto** | "
                        + " | ".join(fmt(ratio(s.get(k), m.get(k)), "{:.3g}x")
                                     for k, _, _ in COLUMNS) + " | |\n")
        f.write("\ndelivered/s is messages delivered per second at the subscribers (connections "
                "per second for the connect row; for the mosquitto_pub/sub burst, lines received "
                "over the time from the publishers' start to the last line received); p50 / p99 are end-to-end latency from the "
                "publisher's send stamp to the subscriber (connect time for the connect row); "
                "RSS is the broker's peak resident memory during the scenario (with the "
                "connections held, for the idle row); CPU s is the broker's user + system "
                "time for the scenario; delivered is messages received / messages the "
                "publishers produced (times the subscribers for fan-out). The ratio row is "
                "Starling / Mosquitto: above 1 is better for delivered/s, below 1 is better for the "
                "rest. Max-rate latencies are dominated by queueing (at QoS 0 much of the "
                "backlog sits in the publishers' socket buffers); read latency from the "
                "fixed-rate rows.\n")


def write_csv(path, rows, brokers):
    keys = ["id", "scenario", "broker", "pattern", "qos", "variant", "rate", "unit", "p50_ms",
            "p99_ms", "rss_mb", "kb_per_conn", "cpu_s", "sent", "recv", "expected",
            "delivered_pct", "error"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in rows:
            r = dict(r, delivered_pct=delivered_pct(r))
            w.writerow(["" if r.get(k) is None else r.get(k, "") for k in keys])
        if len(brokers) == 2:
            for sid, entry in by_id(rows).items():
                if all(b in entry and "error" not in entry[b] for b in brokers):
                    s, m = entry["starling"], entry["mosquitto"]
                    row = {"id": sid, "scenario": s["scenario"], "broker": "ratio"}
                    for k in ("rate", "p50_ms", "p99_ms", "rss_mb", "kb_per_conn", "cpu_s"):
                        v = ratio(s.get(k), m.get(k))
                        row[k] = "" if v is None else f"{v:.3f}"
                    w.writerow([row.get(k, "") for k in keys])


def write_plot(path, rows, brokers, meta):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    table = by_id(rows)
    colors = {"mosquitto": "#3b6ea5", "starling": "#e07b39"}

    def series(variant, key):
        ids = [r["id"] for r in rows if r.get("variant") == variant
               and r["broker"] == brokers[0]]
        labels = [table[i][brokers[0]]["scenario"].replace(" max rate", "")
                  .replace(" fixed rate", "") for i in ids]
        vals = {b: [table[i].get(b, {}).get(key) or 0 for i in ids] for b in brokers}
        return labels, vals

    fig, axes = plt.subplots(3, 1, figsize=(11, 13))
    width = 0.8 / len(brokers)

    def bars(ax, labels, vals, title, ylabel, log=False, label_fmt="{:,.0f}"):
        xs = range(len(labels))
        for k, b in enumerate(brokers):
            pos = [x + (k - (len(brokers) - 1) / 2) * width for x in xs]
            ax.bar(pos, vals[b], width, label=b, color=colors.get(b))
            for x, v in zip(pos, vals[b]):
                if v:
                    ax.annotate(label_fmt.format(v), (x, v), ha="center", va="bottom",
                                fontsize=7)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
                lambda y, _: f"{y:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend()
        ax.grid(axis="y", alpha=0.3)

    labels, vals = series("max", "rate")
    bars(axes[0], labels, vals, "Throughput at max rate (messages delivered / s, higher is "
         "better)", "msg/s")
    labels, vals = series("fixed", "p50_ms")
    bars(axes[1], labels, vals, "Latency p50 at a fixed rate (ms, lower is better)", "ms",
         log=True, label_fmt="{:.2f}")
    labels, vals = series("fixed", "p99_ms")
    bars(axes[2], labels, vals, "Latency p99 at a fixed rate (ms, lower is better)", "ms",
         log=True, label_fmt="{:.2f}")
    fig.suptitle(f"{' vs '.join(meta['versions'].get(b, b) for b in brokers)} - "
                 f"{meta['machine']}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -----------------------------------------------------------------------


def find_bench(explicit):
    if explicit:
        return explicit
    for cand in [os.path.join(REPO, "build", "tools", "starling-bench")] + sorted(
            glob.glob(os.path.join(REPO, "build*", "tools", "starling-bench"))):
        if os.access(cand, os.X_OK):
            return cand
    sys.exit("compare.py: starling-bench not found; build it (meson compile -C build "
             "starling-bench) or pass --bench PATH")


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def broker_arguments(ap, out):
    """The options this script shares with tls_bench.py: where results go and
    which binaries run."""
    ap.add_argument("--out", default=out, help=f"output directory [{out}]")
    ap.add_argument("--bench", help="starling-bench binary [build/tools/starling-bench]")
    ap.add_argument("--mosquitto", default="/usr/sbin/mosquitto")
    ap.add_argument("--starlingd", default=os.path.join(REPO, "build", "broker", "starlingd"),
                    help="starlingd binary; Mosquitto runs alone when it is missing or does "
                         "not start [build/broker/starlingd]")
    ap.add_argument("--mosquitto-only", action="store_true")


def choose_brokers(args, make_mosquitto, make_starling, usable, script):
    """[(name, factory)]: Mosquitto, and Starling when it may run (not
    --mosquitto-only, the binary there, usable(a started probe) true), with
    the reason Mosquitto runs alone (None when it does not)."""
    brokers = [("mosquitto", make_mosquitto)]
    alone = None
    if args.mosquitto_only:
        alone = "Mosquitto alone (--mosquitto-only)"
    elif not os.access(args.starlingd, os.X_OK):
        alone = f"Mosquitto alone: no Starling broker at {args.starlingd}"
    else:
        probe = make_starling()
        if probe.start() and usable(probe):
            brokers.append(("starling", make_starling))
        else:
            alone = f"Mosquitto alone: {args.starlingd} did not start as asked (log in {probe.workdir})"
        probe.stop()
    if alone:
        log(f"{script}: {alone}")
    return brokers, alone


def prepare(args, prefix):
    """(starling-bench binary, raw output directory, a fresh work directory)
    for a script's run: args.bench and args.out as broker_arguments made them."""
    bench = find_bench(args.bench)
    rawdir = os.path.join(args.out, "raw")
    os.makedirs(rawdir, exist_ok=True)
    return bench, rawdir, tempfile.mkdtemp(prefix=prefix)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    broker_arguments(ap, "bench-results")
    ap.add_argument("--long", action="store_true", help="30 s per scenario instead of 5 s")
    ap.add_argument("--duration", type=float, help="seconds of publishing per scenario")
    ap.add_argument("--clients", type=int, default=100,
                    help="publishers for fan-in, pairs for p2p [100]")
    ap.add_argument("--fanout-subs", type=int, default=100, help="subscribers for fan-out [100]")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections [10000]")
    ap.add_argument("--connects", type=int, default=5000, help="connect-rate clients [5000]")
    ap.add_argument("--cli-lines", type=int, default=200000,
                    help="lines per mosquitto_pub -l publisher in the burst row [200000]")
    ap.add_argument("--only", help="comma-separated scenario ids (e.g. cli_fanin4_q0,"
                                   "fanin4_q0_max,idle)")
    args = ap.parse_args()
    if args.duration is None:
        args.duration = 30.0 if args.long else 5.0
    only = set(args.only.split(",")) if args.only else None

    bench = find_bench(args.bench)
    os.makedirs(args.out, exist_ok=True)
    rawdir = os.path.join(args.out, "raw")
    os.makedirs(rawdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="starling-compare-")

    brokers, alone = choose_brokers(args, lambda: Mosquitto(workdir, args.mosquitto),
                                    lambda: Starling(workdir, args.starlingd), lambda probe: True, "compare.py")

    versions = {}
    for name, make in brokers:
        versions[name] = make().version()
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "versions": versions,
        "command": "/usr/bin/python3 tools/bench/compare.py " + " ".join(sys.argv[1:]),
        "bench": os.path.relpath(bench, REPO) if bench.startswith(REPO) else bench,
        "notes": (f"{args.duration:g} s of publishing per scenario, 256-byte payloads, MQTT 5, "
                  f"QoS 1 publishers keep 10 messages in flight; both brokers on 127.0.0.1 with "
                  f"max inflight {MAX_INFLIGHT}, max queued {MAX_QUEUED}, no persistence "
                  f"fsync (Mosquitto persistence false, Starling data dir in tmpfs); a fresh "
                  f"broker per scenario; publishers and subscribers are starling-bench "
                  f"processes on the same machine"),
        "alone": alone,
    }

    rows = []
    names = [n for n, _ in brokers]
    t0 = time.monotonic()
    for name, make in brokers:
        log(f"compare.py: {name}")
        rows += run_broker(make, bench, args, rawdir, only)
    log(f"compare.py: done in {time.monotonic() - t0:.0f} s")

    write_markdown(os.path.join(args.out, "results.md"), rows, names, meta)
    write_csv(os.path.join(args.out, "results.csv"), rows, names)
    if any(r.get("variant") for r in rows if "error" not in r):
        write_plot(os.path.join(args.out, "results.png"), [r for r in rows if "error" not in r],
                   names, meta)
    shutil.rmtree(workdir, ignore_errors=True)
    with open(os.path.join(args.out, "results.md")) as f:
        print(f.read())
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
