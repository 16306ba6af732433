#!/usr/bin/python3
"""Durable sessions: Starling (one node, three nodes) next to Mosquitto 2.0.11
with `persistence true`, same load, same run (issue 15).

Throughput: N publishers -> N subscribers, pair i on topic <run>/i, QoS 1,
publishers keeping 10 messages in flight as fast as they are acknowledged,
256-byte payloads, MQTT 5; once with persistent subscriber sessions (clean
start 0, Session Expiry 3600) and once with clean sessions, so the cost of
durability is visible. The figure is messages delivered per second at the
subscribers, with the share delivered and the worst p50 / p99 end-to-end
latency. Three nodes: the subscribers on node 1, the publishers on nodes 2
and 3, so every message crosses a peer link and is queued on node 1.

Backlog: S offline persistent sessions (QoS 1, one topic each), M messages
published to each while they are offline (S x M queued); then the data
directory's size, the time for the S sessions to reconnect and drain
everything; then filled again, the node holding them restarted (Starling:
kill -9, the failure durability is for; Mosquitto: SIGTERM, so that it writes
its persistence file, which it otherwise does every 30 minutes), its restart
time (start to accepting connections, three nodes: and agreeing on a leader),
and what the sessions get after the restart.

Data directories are on disk (a temporary directory under --data-root,
default the system's; not tmpfs: durability means syncs). Mosquitto gets its
own mosquitto.conf with `persistence true` and `persistence_location` in its
temporary directory. Load from starling-bench, nodes from
tests/cluster/harness.py, as cluster_bench.py. A benchmark prints figures
(a Markdown table, also in OUT/results.md, with the load average); it asserts
nothing. Exit status 1 when a setup did not start or a step failed.

  /usr/bin/python3 tools/bench/durable_bench.py                     # 1,000 x 1,000: several minutes
  /usr/bin/python3 tools/bench/durable_bench.py --sessions 100 --messages 100 -d 3
  /usr/bin/python3 tools/bench/durable_bench.py --only throughput --setups "1 node,mosquitto"
"""

import argparse
import datetime
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import cluster_bench
import compare

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

SETUPS = ("mosquitto", "1 node", "3 nodes")
KINDS = ("persistent", "clean")
EXPIRY = 3600
WINDOW = 10             # QoS 1 messages in flight per publisher
BACKLOG_PAYLOAD = 64    # bytes (12 carry the send time)
STALL_S = 15.0          # a drain that received nothing for this long is over
log = cluster_bench.log


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starlingd", default=os.environ.get("STARLINGD", os.path.join(REPO, "build", "broker",
                                                                                   "starlingd")),
                    help="starlingd binary [$STARLINGD or build/broker/starlingd]")
    ap.add_argument("--mosquitto", default=os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto"),
                    help="mosquitto binary [/usr/sbin/mosquitto]")
    ap.add_argument("--bench", help="starling-bench binary [build/tools/starling-bench]")
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="seconds of publishing per throughput run [5]")
    ap.add_argument("-N", "--pairs", type=int, default=20, help="publisher/subscriber pairs of the throughput runs [20]")
    ap.add_argument("--sessions", type=int, default=1000, help="offline sessions of the backlog runs [1000]")
    ap.add_argument("--messages", type=int, default=1000, help="messages queued per offline session [1000]")
    ap.add_argument("--setups", default=",".join(SETUPS), help="comma-separated, of %s [all]" % ", ".join(SETUPS))
    ap.add_argument("--only", choices=("throughput", "backlog"), help="one part only [both]")
    ap.add_argument("--data-root", default=None,
                    help="where the data directories go (on disk) [the system's temporary directory]")
    ap.add_argument("--out", default=os.path.join("bench-results", "durable"),
                    help="directory for results.md, the raw starling-bench JSON and the logs "
                         "[bench-results/durable]")
    return ap.parse_args()


# ---------------------------------------------------------------------------
# the brokers: a uniform face over Mosquitto and Starling nodes


class Endpoint:
    def __init__(self, host, port):
        self.host, self.port = host, port


class MosquittoSetup:
    """One Mosquitto 2.0.11 with persistence true in its own directory."""

    name = "mosquitto"

    def __init__(self, binary, root, limits):
        self.binary, self.root, self.limits = binary, root, limits
        self.dir = os.path.join(root, "mosquitto")
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = os.path.join(self.dir, "persistence")
        os.makedirs(self.data_dir, exist_ok=True)
        self._writable_after_setuid()
        self.port = compare.free_port()
        self.proc = None

    def _writable_after_setuid(self):
        """Started as root, Mosquitto drops to the user mosquitto: that user
        must reach and write the persistence directory."""
        if os.geteuid() != 0:
            return
        try:
            pw = pwd.getpwnam("mosquitto")
        except KeyError:
            return
        for d in (self.root, self.dir):
            os.chmod(d, 0o711)
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)

    def conf(self):
        path = os.path.join(self.dir, "mosquitto.conf")
        with open(path, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n"
                    "max_inflight_messages %d\nmax_queued_messages %d\nmax_queued_bytes 0\nmax_connections -1\n"
                    "log_dest stderr\nlog_type error\nlog_type warning\nconnection_messages false\n" % (
                        self.port, self.data_dir, self.limits["max_inflight"], self.limits["max_queued"]))
        return path

    def start(self):
        conf = self.conf()
        logf = open(os.path.join(self.dir, "mosquitto.log"), "ab")
        self.proc = subprocess.Popen([self.binary, "-c", conf], stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=compare.raise_nofile)
        if not compare.wait_port(self.port, self.proc, timeout=600):
            raise RuntimeError("mosquitto did not start (log in %s)" % self.dir)

    def sub_at(self):
        return Endpoint("127.0.0.1", self.port)

    def pub_at(self):
        return [Endpoint("127.0.0.1", self.port)]

    def disk(self):
        return du(self.data_dir), None

    def restart(self):
        """SIGTERM (Mosquitto writes mosquitto.db then), start; (stop s, start s)."""
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=600)
        stopped = time.monotonic() - t
        t = time.monotonic()
        self.start()
        return stopped, time.monotonic() - t

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class StarlingSetup:
    """One or three starlingd nodes (tests/cluster/harness.py)."""

    def __init__(self, harness, name, root, settings):
        self.harness, self.name, self.root = harness, name, root
        self.cluster = cluster_bench.start_setup(harness, name, root, settings)
        self.nodes = self.cluster.nodes

    def sub_at(self):
        return self.nodes[0]

    def pub_at(self):
        return self.nodes[1:] or self.nodes

    def disk(self):
        """(bytes of node 1's data directory, bytes of all nodes' together)."""
        sizes = [du(n.data_dir) for n in self.nodes]
        return sizes[0], sum(sizes) if len(sizes) > 1 else None

    def restart(self):
        """kill -9 node 1, start it; (None, seconds until it accepts MQTT and
        every node agrees on a leader)."""
        n = self.nodes[0]
        n.kill()
        t = time.monotonic()
        n.start()
        n.wait_listening(timeout=600)
        self.cluster.wait_leader(timeout=600)
        return None, time.monotonic() - t

    def stop(self):
        for n in self.nodes:
            n.terminate()


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def make_setup(name, args, harness, root, limits):
    if name == "mosquitto":
        s = MosquittoSetup(args.mosquitto, root, limits)
        s.start()
        return s
    settings = dict(limits, sys_interval=0)
    return StarlingSetup(harness, name, root, settings)


# ---------------------------------------------------------------------------
# starling-bench runs


def where(ep):
    return ["-h", ep.host, "-p", ep.port]


def sub_args(ep, count, topic, prefix, persistent, extra=()):
    a = where(ep) + ["-q", 1, "-c", count, "-i", 0, "-t", topic, "--prefix", prefix]
    if persistent:
        a += ["-C", "false", "-x", EXPIRY]
    return a + list(extra)


def publishers(bench, setup, count, topic, rawdir, tag, extra):
    """count publishers split over the setup's publishing nodes (%i numbering continuous)."""
    places = setup.pub_at()
    out, start = [], 0
    for i, ep in enumerate(places):
        n = count // len(places) + (1 if i < count % len(places) else 0)
        if n == 0:
            continue
        out.append(compare.Bench(bench, "pub", where(ep) + ["-q", 1, "-c", n, "-n", start, "-i", 0, "-t", topic,
                                                           "-F", WINDOW, "-I", 0, "-w"] + extra,
                                 rawdir, "%s-pub%d" % (tag, i)))
        start += n
    return out


def throughput(bench, setup, kind, args, rawdir):
    tag = "%s-%s" % (setup.name.replace(" ", ""), kind)
    topic = "tp%s/%s/%%i" % (kind[0], int(time.time() * 1000))
    sub = compare.Bench(bench, "sub", sub_args(setup.sub_at(), args.pairs, topic, "tp%s%d" % (kind[0], os.getpid()),
                                               kind == "persistent", ["-d", args.duration + 120]),
                        rawdir, tag + "-sub")
    if not sub.wait_ready():
        sub.interrupt()
        raise RuntimeError("subscribers did not get ready: " + "".join(sub.stderr_lines[-3:]))
    pubs = publishers(bench, setup, args.pairs, topic, rawdir, tag, ["-d", args.duration, "-s", 256])
    published = [p.result(timeout=args.duration + 120) for p in pubs]
    (received,) = compare.drain([sub])
    sent = sum(p["publish"]["sent"] for p in published)
    acked = sum(p["publish"]["acked"] for p in published)
    count, window = received["receive"]["count"], received["receive"]["window_s"]
    return {"rate": count / window if window else 0.0, "recv": count, "acked": acked, "sent": sent,
            "p50_ms": received["latency_us"]["p50"] / 1000.0, "p99_ms": received["latency_us"]["p99"] / 1000.0}


def drain_all(bench, setup, args, rawdir, tag, prefix, topic):
    """The S sessions reconnect and receive until S x M arrived or nothing
    came for STALL_S; (seconds from start to the last message, received)."""
    want = args.sessions * args.messages
    t = time.monotonic()
    sub = compare.Bench(bench, "sub", sub_args(setup.sub_at(), args.sessions, topic, prefix, True,
                                               ["-L", want, "--max-connecting", 50]), rawdir, tag)
    while sub.proc.poll() is None:
        if time.monotonic() - max(sub.recv_changed, t) > STALL_S:
            sub.interrupt()
            break
        time.sleep(0.1)
    res = sub.result(timeout=60)
    count = res["receive"]["count"]
    done = time.monotonic() - t
    if count < want:
        done = max(0.0, sub.recv_changed - t)  # it then waited STALL_S for nothing
    return done, count


def fill(bench, setup, args, rawdir, tag, topic):
    t = time.monotonic()
    pubs = publishers(bench, setup, args.sessions, topic, rawdir, tag,
                      ["--limit-per-client", args.messages, "-s", BACKLOG_PAYLOAD, "--max-connecting", 50])
    res = [p.result(timeout=3600) for p in pubs]
    acked = sum(r["publish"]["acked"] for r in res)
    return acked, time.monotonic() - t


def backlog(bench, setup, args, rawdir):
    tag = setup.name.replace(" ", "")
    prefix, topic = "bl%d" % os.getpid(), "bl/%i"
    want = args.sessions * args.messages
    r = {"want": want}
    sub = compare.Bench(bench, "sub", sub_args(setup.sub_at(), args.sessions, topic, prefix, True,
                                               ["--max-connecting", 50]), rawdir, tag + "-bl-make")
    if not sub.wait_ready(timeout=300):
        sub.interrupt()
        raise RuntimeError("sessions not made: " + "".join(sub.stderr_lines[-3:]))
    sub.interrupt()
    made = sub.result()
    if made["connect"]["connected"] < args.sessions:
        raise RuntimeError("only %d of %d sessions connected" % (made["connect"]["connected"], args.sessions))
    time.sleep(1.0)  # the disconnects are applied
    log("    filling %d x %d ..." % (args.sessions, args.messages))
    r["acked1"], r["fill_s"] = fill(bench, setup, args, rawdir, tag + "-bl-fill1", topic)
    r["disk"], r["disk_all"] = setup.disk()
    log("    draining ...")
    r["drain_s"], r["drained"] = drain_all(bench, setup, args, rawdir, tag + "-bl-drain1", prefix, topic)
    log("    filling again, restarting ...")
    r["acked2"], _ = fill(bench, setup, args, rawdir, tag + "-bl-fill2", topic)
    r["disk2"], _ = setup.disk()
    r["stop_s"], r["restart_s"] = setup.restart()
    r["disk_stopped"], _ = setup.disk()
    r["drain2_s"], r["after_restart"] = drain_all(bench, setup, args, rawdir, tag + "-bl-drain2", prefix, topic)
    return r


# ---------------------------------------------------------------------------
# report


def mb(n):
    return "-" if n is None else "%.1f MB" % (n / 1e6)


def throughput_table(results, setups):
    lines = ["| setup | sessions | msg/s delivered | delivered / acked | p50 ms | p99 ms |",
             "|---|---|---:|---:|---:|---:|"]
    for kind in KINDS:
        for setup in setups:
            r = results.get((setup, kind))
            if r is None:
                continue
            if "error" in r:
                lines.append("| %s | %s | failed: %s | | | |" % (setup, kind, r["error"][:80]))
                continue
            lines.append("| %s | %s | %.0f | %.1f%% | %.2f | %.2f |" % (
                setup, kind, r["rate"], 100.0 * r["recv"] / r["acked"] if r["acked"] else 0.0, r["p50_ms"],
                r["p99_ms"]))
    ratios = []
    base = results.get(("mosquitto", "persistent"))
    if base and "error" not in base and base["rate"]:
        for setup in setups:
            r = results.get((setup, "persistent"))
            if setup != "mosquitto" and r and "error" not in r:
                ratios.append("%s / Mosquitto (persistent): %.2fx" % (setup, r["rate"] / base["rate"]))
    return "\n".join(lines + ([""] + ["- " + x for x in ratios] if ratios else []))


def backlog_table(results, setups, args):
    lines = ["| setup | fill msg/s | data dir after fill | drain s | drained | restart s | "
             "data dir at restart | delivered after restart |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for setup in setups:
        r = results.get(setup)
        if r is None:
            continue
        if "error" in r:
            lines.append("| %s | failed: %s | | | | | | |" % (setup, r["error"][:80]))
            continue
        disk = mb(r["disk"]) + ("" if r["disk_all"] is None else " (%s all nodes)" % mb(r["disk_all"]))
        restart = "%.2f" % r["restart_s"]
        if r["stop_s"] is not None:
            restart += " (+%.2f stop)" % r["stop_s"]
        at_restart = mb(r["disk2"]) if r["stop_s"] is None else "%s (%s after stop)" % (mb(r["disk2"]),
                                                                                        mb(r["disk_stopped"]))
        lines.append("| %s | %.0f | %s | %s | %d / %d | %s | %s | %d / %d |" % (
            setup, r["acked1"] / r["fill_s"] if r["fill_s"] else 0.0, disk,
            "%.2f" % r["drain_s"] if r["drained"] else "-", r["drained"], r["want"],
            restart, at_restart, r["after_restart"], r["want"]))
    return "\n".join(lines)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main():
    args = parse_args()
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    for s in setups:
        if s not in SETUPS:
            sys.exit("durable_bench.py: unknown setup %r (of %s)" % (s, ", ".join(SETUPS)))
    if any(s != "mosquitto" for s in setups) and not os.access(args.starlingd, os.X_OK):
        sys.exit("durable_bench.py: no starlingd at %s (build it, or pass --starlingd)" % args.starlingd)
    if "mosquitto" in setups and not os.access(args.mosquitto, os.X_OK):
        sys.exit("durable_bench.py: no mosquitto at %s" % args.mosquitto)
    harness = cluster_bench.load_harness(args.starlingd)
    harness.PEER_TLS = False
    bench = compare.find_bench(args.bench)
    rawdir = os.path.join(args.out, "raw")
    os.makedirs(rawdir, exist_ok=True)
    parts = [args.only] if args.only else ["throughput", "backlog"]
    loads = [loadavg()]
    tput, blog = {}, {}
    failed = False
    t0 = time.monotonic()
    for part in parts:
        for name in setups:
            if part == "throughput":
                limits = {"max_inflight": compare.MAX_INFLIGHT, "max_queued": compare.MAX_QUEUED}
            else:
                limits = {"max_inflight": compare.MAX_INFLIGHT, "max_queued": max(compare.MAX_QUEUED, args.messages)}
                if name != "mosquitto":
                    limits.update(max_queued_bytes=0, max_queued_bytes_total=0)
            root = tempfile.mkdtemp(prefix="starling-durable-bench-", dir=args.data_root)
            log("durable_bench.py: %s, %s" % (part, name))
            setup = None
            try:
                setup = make_setup(name, args, harness, root, limits)
                if part == "throughput":
                    for kind in KINDS:
                        log("  %s sessions ..." % kind)
                        try:
                            r = throughput(bench, setup, kind, args, rawdir)
                            log("    %.0f msg/s, %d of %d acked delivered" % (r["rate"], r["recv"], r["acked"]))
                        except (RuntimeError, KeyError) as e:
                            r, failed = {"error": str(e)}, True
                            log("    failed: %s" % e)
                        tput[(name, kind)] = r
                else:
                    try:
                        blog[name] = backlog(bench, setup, args, rawdir)
                        log("    %r" % blog[name])
                    except (RuntimeError, KeyError) as e:
                        blog[name], failed = {"error": str(e)}, True
                        log("    failed: %s" % e)
            except (AssertionError, RuntimeError) as e:  # the harness's waits, a broker not starting
                log("  %s did not start: %s" % (name, str(e)[:2000]))
                failed = True
                if part == "throughput":
                    for kind in KINDS:
                        tput[(name, kind)] = {"error": "did not start"}
                else:
                    blog[name] = {"error": "did not start"}
            finally:
                if setup is not None:
                    setup.stop()
                logs = os.path.join(args.out, "logs", part, name.replace(" ", ""))
                shutil.rmtree(logs, ignore_errors=True)
                shutil.copytree(root, logs, ignore=shutil.ignore_patterns("data", "persistence"))
                shutil.rmtree(root, ignore_errors=True)
            loads.append(loadavg())
    out = ["# Durable sessions, %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "",
           "- machine: %s; load average (1, 5, 15 min) at the start %s, at the end %s" % (
               compare.machine(), loads[0], loads[-1]),
           "- starlingd: %s; Mosquitto: %s (persistence true); load: %s; data directories on disk (%s); "
           "%.0f s in all" % (args.starlingd, args.mosquitto, bench, args.data_root or tempfile.gettempdir(),
                              time.monotonic() - t0)]
    if "throughput" in parts:
        out += ["", "## QoS 1 to persistent and clean sessions", "",
                "%d publisher -> subscriber pairs, MQTT 5, QoS 1, %d in flight per publisher, 256-byte payloads, "
                "%g s at the maximum rate; max inflight %d, max queued %d; three nodes: subscribers on node 1, "
                "publishers on nodes 2 and 3. msg/s: delivered per second at the subscribers; p50 / p99: "
                "end-to-end latency, mostly queueing at the maximum rate." % (
                    args.pairs, WINDOW, args.duration, compare.MAX_INFLIGHT, compare.MAX_QUEUED),
                "", throughput_table(tput, setups)]
    if "backlog" in parts:
        out += ["", "## %d offline sessions x %d queued messages" % (args.sessions, args.messages), "",
                "QoS 1, %d-byte payloads, one topic per session; three nodes: sessions on node 1, publishers on "
                "nodes 2 and 3. drain: the sessions reconnect (50 handshakes at a time) until every message "
                "arrived; restart: Starling kill -9 of node 1, Mosquitto SIGTERM (it writes its persistence "
                "file then; otherwise every 30 min); delivered after restart: what the sessions get after it "
                "(of a second fill)." % BACKLOG_PAYLOAD,
                "", backlog_table(blog, setups, args)]
    report = "\n".join(out) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(report)
    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
