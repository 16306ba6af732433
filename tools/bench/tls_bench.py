#!/usr/bin/python3
"""TLS benchmark: Starling next to Mosquitto over MQTT over TLS, same machine,
same run, the same certificates on both brokers.

Makes a development CA and an ECDSA P-256 server certificate with
deploy/make-certs.sh (--rsa: RSA 2048), starts each broker with one TLS
listener on a free loopback port (Starling: `listener PORT 127.0.0.1 tls`
with `certfile` / `keyfile` after it and `log_level warn`, as quiet as
Mosquitto's `connection_messages false` / `log_type error`; Mosquitto: the
same three lines), and
drives it with `starling-bench -S` (TLS 1.3 unless --tls12; key exchange
X25519 by OpenSSL's default on both sides, the certificate signature
P-256). A fresh broker per scenario, measured from /proc like compare.py
(which this reuses).

Scenarios:
  handshakes   `starling-bench conn -S -c N` with --max-connecting 50: full
               TLS handshakes (no resumption) plus MQTT CONNECT per second,
               and the broker's CPU seconds per 1,000 handshakes
  idle         N TLS connections held: the broker's resident memory per
               connection (RSS with them held minus RSS before, over N)
  QoS 0 / 1    fan-in 4:1 and 20 point-to-point pairs at the maximum rate
               (QoS 1 with 10 in flight per publisher): messages delivered
               per second at the subscribers, the loss, and the broker's CPU
               seconds per million delivered messages

Writes results.md, results.csv and the raw starling-bench JSON to --out.

  /usr/bin/python3 tools/bench/tls_bench.py --out bench-results/tls     # ~2 min
  /usr/bin/python3 tools/bench/tls_bench.py --mosquitto-only           # check the script
"""

import argparse
import csv
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the broker processes, starling-bench runs, /proc readings)
from compare import MAX_INFLIGHT, MAX_QUEUED, Bench, drain, log  # noqa: E402

REPO = compare.REPO


def make_certs(directory, rsa):
    env = dict(os.environ)
    if rsa:
        env["STARLING_CERT_KEY"] = "rsa"
    subprocess.run(["bash", os.path.join(REPO, "deploy", "make-certs.sh"), directory], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=120)
    return directory


class TLSListener:
    """Mixed into compare's brokers: the certificate directory and the TLS
    version their command() writes into the listener's configuration."""

    def __init__(self, workdir, binary, certs, tls_version):
        super().__init__(workdir, binary)
        self.certs = certs
        self.tls_version = tls_version


class TLSMosquitto(TLSListener, compare.Mosquitto):
    def listener_lines(self):
        # as root Mosquitto drops to 'mosquitto', who could not read the key
        user = "user root\n" if os.geteuid() == 0 else ""
        return (super().listener_lines() + f"certfile {self.certs}/server.crt\nkeyfile {self.certs}/server.key\n"
                f"tls_version {self.tls_version}\n{user}")


class TLSStarling(TLSListener, compare.Starling):
    def command(self):
        conf = os.path.join(self.workdir, "starling-tls.conf")
        with open(conf, "w") as f:
            f.write(f"""listener {self.port} 127.0.0.1 tls
certfile {self.certs}/server.crt
keyfile {self.certs}/server.key
tls_version {self.tls_version}
admin_listen off
log_level warn
cluster_bind 127.0.0.1:{compare.free_port()}
""")
        # compare.Starling's command without -p / --bind (they would change the
        # first listener): the tmpfs data directory and the limits
        plain = super().command()
        return [self.binary, "-c", conf] + plain[plain.index("--data-dir"):]


def tls_args(broker, certs, pin):
    """starling-bench's connection options: TLS, the broker verified against
    the CA by its name, optionally one TLS version."""
    args = ["-S", "--cacertfile", os.path.join(certs, "ca.crt"), "-h", "localhost", "-p", broker.port]
    return args + (["--ssl-version", pin] if pin else [])


def connect_all(broker, bench, conn, n, rawdir, what):
    """n TLS connections opened (50 handshakes at a time) and held: the
    starling-bench process, past its connection phase."""
    c = Bench(bench, "conn", conn + ["-c", n, "-i", 0, "--max-connecting", 50, "-d", 600], rawdir,
              f"{broker.name}-tls-{what}")
    if not c.wait_ready(timeout=300):
        c.interrupt()
        raise RuntimeError(f"{what}: the connections did not finish: " + "".join(c.stderr_lines[-3:]))
    return c


def run_handshakes(broker, bench, conn, n, rawdir):
    cpu0 = broker.cpu_s()
    broker.sample_start()
    c = connect_all(broker, bench, conn, n, rawdir, "handshakes")
    cpu = broker.cpu_s() - cpu0  # before the disconnects
    client_cpu = compare.process_cpu_s(c.proc.pid)  # the load generator's half of the handshakes
    c.interrupt()
    r = c.result()
    broker.sample_stop()
    t = r["connect"]["time_us"]
    ok = r["connect"]["connected"]
    return {
        "id": "handshakes", "scenario": f"TLS handshakes + CONNECT ({n} clients, 50 in flight)",
        "rate": r["connect"]["rate_per_s"], "unit": "conn/s", "p50_ms": t["p50"] / 1000.0,
        "p99_ms": t["p99"] / 1000.0, "rss_mb": broker.peak_kb / 1024.0, "kb_per_conn": None,
        "cpu_s": cpu, "cpu_per": cpu / ok * 1000 if ok else None, "cpu_unit": "s/1k conn",
        "sent": n, "recv": ok, "expected": n,
        "client_cpu_s": client_cpu,
    }


def run_idle(broker, bench, conn, n, rawdir):
    return compare.run_idle(broker, bench, n, rawdir, conn=conn + ["--max-connecting", 50], kind="TLS")


def message_scenarios():
    """(id, label, pub args, sub args, subscribers per message)."""
    rows = []
    for qos in (0, 1):
        window = ["-F", "10"] if qos else []
        rows.append((f"fanin4_q{qos}", f"fan-in 4:1 QoS {qos} max rate",
                     ["-c", 4, "-t", "fanin/%i", "-I", 0, "-q", qos] + window,
                     ["-c", 1, "-t", "fanin/+", "-q", qos]))
        rows.append((f"p2p20_q{qos}", f"p2p 20 pairs QoS {qos} max rate",
                     ["-c", 20, "-t", "p2p/%i", "-I", 0, "-q", qos] + window,
                     ["-c", 20, "-t", "p2p/%i", "-q", qos]))
    return rows


def run_messages(broker, bench, conn, scen, duration, rawdir):
    sid, label, pub_args, sub_args = scen
    cpu0 = broker.cpu_s()
    broker.sample_start()
    sub = Bench(bench, "sub", conn + ["-i", 0] + sub_args + ["-d", duration + 120], rawdir,
                f"{broker.name}-tls-{sid}-sub")
    if not sub.wait_ready():
        sub.interrupt()
        raise RuntimeError(f"{sid}: subscribers did not get ready: " + "".join(sub.stderr_lines[-3:]))
    pub = Bench(bench, "pub", conn + ["-i", 0] + pub_args + ["-w", "-d", duration, "-s", 256], rawdir,
                f"{broker.name}-tls-{sid}-pub")
    p = pub.result(timeout=duration + 120)
    s = drain([sub])[0]
    broker.sample_stop()
    cpu = broker.cpu_s() - cpu0
    recv = s["receive"]["count"]
    lat = s["latency_us"]
    return {
        "id": sid, "scenario": label, "rate": s["receive"]["rate_per_s"], "unit": "msg/s",
        "p50_ms": lat["p50"] / 1000.0, "p99_ms": lat["p99"] / 1000.0, "rss_mb": broker.peak_kb / 1024.0,
        "kb_per_conn": None, "cpu_s": cpu, "cpu_per": cpu / recv * 1e6 if recv else None,
        "cpu_unit": "s/M msg", "sent": p["publish"]["sent"], "recv": recv, "expected": p["publish"]["sent"],
    }


def run_broker(make_broker, bench, certs, args, rawdir, only):
    """Every row against fresh instances of one broker (compare.run_plan)."""
    plan = ([("handshakes", "handshakes", "handshakes"), ("idle", "idle", "idle")]
            + [(s[0], s[1], s) for s in message_scenarios()])
    pin = "tlsv1.2" if args.tls12 else None

    def run_one(broker, what):
        conn = tls_args(broker, certs, pin)
        if what == "handshakes":
            return run_handshakes(broker, bench, conn, args.handshakes, rawdir)
        if what == "idle":
            return run_idle(broker, bench, conn, args.idle, rawdir)
        return run_messages(broker, bench, conn, what, args.duration, rawdir)

    return compare.run_plan(make_broker, plan, only, run_one, summary_line)


def loss(r):
    if not r.get("expected"):
        return None
    return 100.0 * (1 - r["recv"] / r["expected"])


def summary_line(r):
    """compare.py's progress line, with the CPU per unit."""
    per = f", {r['cpu_per']:.2f} CPU {r['cpu_unit']}" if r.get("cpu_per") is not None else ""
    return compare.summary_line(r) + per


COLUMNS = [("rate", "rate", "{:,.0f}"), ("loss", "loss %", "{:.2f}"), ("cpu_per", "CPU s per unit", "{:.3f}"),
           ("kb_per_conn", "KiB/conn", "{:.2f}"), ("p50_ms", "p50 ms", "{:.2f}"), ("p99_ms", "p99 ms", "{:.2f}"),
           ("rss_mb", "RSS MB", "{:.1f}"), ("cpu_s", "CPU s", "{:.2f}")]


def value(r, key):
    return loss(r) if key == "loss" else r.get(key)


def write_markdown(path, rows, names, meta):
    table = {}
    for r in rows:
        table.setdefault(r["id"], {})[r["broker"]] = r
    with open(path, "w") as f:
        f.write(f"# MQTT over TLS: Starling vs Mosquitto, {meta['date']}\n\n")
        for line in meta["lines"]:
            f.write(f"- {line}\n")
        f.write("\n| scenario | broker | unit | " + " | ".join(c[1] for c in COLUMNS) + " |\n")
        f.write("|---|---|---|" + "---:|" * len(COLUMNS) + "\n")
        for sid, entry in table.items():
            for name, b, r in compare.labelled(entry, names):
                if "error" in r:
                    f.write(f"| {name} | {b} | failed: {r['error'][:80]} |" + " |" * len(COLUMNS) + "\n")
                    continue
                unit = r["unit"] + (f", CPU {r['cpu_unit']}" if r.get("cpu_unit") else "")
                f.write(f"| {name} | {b} | {unit} | "
                        + " | ".join(compare.fmt(value(r, k), fm) for k, _, fm in COLUMNS) + " |\n")
            if len(names) == 2 and all(b in entry and "error" not in entry[b] for b in names):
                s, m = entry["starling"], entry["mosquitto"]
                f.write("| | **Starling / Mosquitto** | | "
                        + " | ".join("" if k == "loss" else compare.fmt(compare.ratio(s.get(k), m.get(k)), "{:.3g}x")
                                     for k, _, _ in COLUMNS) + " |\n")
        f.write("\nrate: connections per second (TLS handshake, then MQTT CONNECT / CONNACK) for the "
                "handshake row, messages delivered per second at the subscribers for the message rows; "
                "loss: 100 % minus received / published; CPU s per unit: the broker's user + system CPU "
                "seconds per 1,000 handshakes or per million delivered messages; KiB/conn: resident memory "
                "with the idle connections held minus before, per connection; p50 / p99: connect time, "
                "or end-to-end latency (max-rate latency is mostly queueing); RSS: peak resident memory. "
                "The ratio row is Starling / Mosquitto: above 1 is better for rate, below 1 for the "
                "rest.\n")
        for b in names:
            r = table.get("handshakes", {}).get(b)
            if r and "error" not in r and r.get("rate"):
                wall = r["recv"] / r["rate"]
                busy = (r["client_cpu_s"] + r["cpu_s"]) / wall
                f.write(f"\nHandshakes against {b}: in {wall:.1f} s starling-bench used {r['client_cpu_s']:.2f} "
                        f"CPU s and the broker {r['cpu_s']:.2f}, {busy:.2f} of the machine's {os.cpu_count()} "
                        f"CPUs" + (": the rate is bounded by the machine, not by the broker.\n"
                                   if busy > 0.8 * (os.cpu_count() or 1) else
                                   "; the rest of the time both waited (other processes, loopback, the "
                                   "broker's turnaround).\n"))


def write_csv(path, rows):
    keys = ["id", "scenario", "broker", "rate", "unit", "loss", "cpu_per", "cpu_unit", "kb_per_conn", "p50_ms",
            "p99_ms", "rss_mb", "cpu_s", "sent", "recv", "expected", "error"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in rows:
            r = dict(r, loss=loss(r) if "error" not in r else None)
            w.writerow(["" if r.get(k) is None else r.get(k, "") for k in keys])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    compare.broker_arguments(ap, "bench-results/tls")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of publishing per message row [5]")
    ap.add_argument("--handshakes", type=int, default=2000, help="clients of the handshake row [2000]")
    ap.add_argument("--idle", type=int, default=2000, help="idle TLS connections [2000]")
    ap.add_argument("--rsa", action="store_true", help="RSA 2048 certificates instead of ECDSA P-256")
    ap.add_argument("--tls12", action="store_true", help="TLS 1.2 on both sides instead of 1.3")
    ap.add_argument("--certs", help="a directory made by deploy/make-certs.sh (default: made now)")
    ap.add_argument("--only", help="comma-separated scenario ids: handshakes, idle, fanin4_q0, p2p20_q0, "
                                   "fanin4_q1, p2p20_q1")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None

    bench = compare.find_bench(args.bench)
    os.makedirs(args.out, exist_ok=True)
    rawdir = os.path.join(args.out, "raw")
    os.makedirs(rawdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="starling-tls-bench-")
    certs = args.certs or make_certs(os.path.join(workdir, "certs"), args.rsa)
    version = "tlsv1.2" if args.tls12 else "tlsv1.3"

    # a starlingd without TLS listeners refuses the listener's certfile line
    # (or answers in plain TCP): the probe's TLS connection tells
    brokers, alone = compare.choose_brokers(
        args, lambda: TLSMosquitto(workdir, args.mosquitto, certs, version),
        lambda: TLSStarling(workdir, args.starlingd, certs, version), lambda probe: probe_tls(probe, bench, certs),
        "tls_bench.py")

    versions = {name: make().version() for name, make in brokers}
    key = "RSA 2048" if args.rsa else "ECDSA P-256"
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "lines": [f"machine: {compare.machine()}"]
        + [f"{n}: {v}" for n, v in versions.items()]
        + [f"command: `/usr/bin/python3 tools/bench/tls_bench.py {' '.join(sys.argv[1:])}`",
           f"{'TLS 1.2' if args.tls12 else 'TLS 1.3'}, server certificate {key} from deploy/make-certs.sh "
           f"(the same files on both brokers), full handshakes (no session resumption), the client "
           f"verifying the broker against the CA; starling-bench -S on the same machine",
           f"{args.duration:g} s of publishing per message row, 256-byte payloads, MQTT 5, QoS 1 "
           f"publishers with 10 in flight; both brokers on 127.0.0.1 with max inflight {MAX_INFLIGHT}, "
           f"max queued {MAX_QUEUED}, no persistence fsync; a fresh broker per row"]
        + ([f"**{alone}**"] if alone else []),
    }
    rows = []
    t0 = time.monotonic()
    for name, make in brokers:
        log(f"tls_bench.py: {name}")
        rows += run_broker(make, bench, certs, args, rawdir, only)
    log(f"tls_bench.py: done in {time.monotonic() - t0:.0f} s")
    names = [n for n, _ in brokers]
    write_markdown(os.path.join(args.out, "results.md"), rows, names, meta)
    write_csv(os.path.join(args.out, "results.csv"), rows)
    shutil.rmtree(workdir, ignore_errors=True)
    with open(os.path.join(args.out, "results.md")) as f:
        print(f.read())
    return 1 if any("error" in r for r in rows) else 0


def probe_tls(broker, bench, certs):
    """The listener answers TLS (a starlingd without TLS listeners takes the
    port as plain TCP, or refuses the config)."""
    argv = [bench, "conn", "--json", "--quiet", "-c", "1", "-d", "1", "--connect-timeout", "5"]
    r = subprocess.run(argv + [str(a) for a in tls_args(broker, certs, None)], capture_output=True, text=True,
                       timeout=60)
    return r.returncode == 0


if __name__ == "__main__":
    sys.exit(main())
