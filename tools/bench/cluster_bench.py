#!/usr/bin/python3
"""Cluster forwarding throughput: three Starling nodes next to one, same load, same run.

Two workloads, each at QoS 0 and QoS 1, publishers sending as fast as TCP
(QoS 0) or their window of 10 unacknowledged messages (QoS 1) allows:

  fan-in   P publishers (half on node 2, half on node 3), topics fanin/<n>,
           -> 1 subscriber to fanin/+ on node 1: every message crosses a peer link
  fan-out  1 publisher on node 1, topic fanout/all
           -> S subscribers (half on node 2, half on node 3): each message
           crosses two peer links once, then fans out on each receiving node

The one-node run puts the same client processes on the one node. The
figure is messages delivered per second at the subscribers (received over the
window from the first to the last message received), next to the share of the
published messages (times the subscribers for fan-out) that arrived, and the
worst p50 / p99 end-to-end latency of the subscriber processes; the ratio is
three nodes over one.

The nodes are the cluster tests' (tests/cluster/harness.py: node i on
127.0.0.i, free ports, generated node.conf, data directories in tmpfs so the
Raft log's syncs cost nothing, as compare.py does) with compare.py's limits
(max inflight 20, max queued 1000); the load is starling-bench, driven as
compare.py drives it. A benchmark prints figures; it asserts nothing about
them. Exit status 1 when a setup did not start or a scenario failed.

  /usr/bin/python3 tools/bench/cluster_bench.py                 # ~1 min
  /usr/bin/python3 tools/bench/cluster_bench.py -d 20 -P 200 -S 200 --qos 1
  /usr/bin/python3 tools/bench/cluster_bench.py --peer-tls      # TLS peer links

Peer links are plaintext unless --peer-tls (certificates from
deploy/make-certs.sh in a temporary directory): run it both ways to see what
TLS between nodes costs.
"""

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time

import compare

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

SETUPS = ("1 node", "3 nodes")
PATTERNS = ("fan-in", "fan-out")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starlingd", default=os.environ.get("STARLINGD", os.path.join(REPO, "build", "broker",
                                                                                   "starlingd")),
                    help="starlingd binary [$STARLINGD or build/broker/starlingd]")
    ap.add_argument("--bench", help="starling-bench binary [build/tools/starling-bench]")
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="seconds of publishing per run [5]")
    ap.add_argument("-P", "--publishers", type=int, default=50, help="fan-in publishers [50]")
    ap.add_argument("-S", "--subscribers", type=int, default=50, help="fan-out subscribers [50]")
    ap.add_argument("--qos", default="0,1", help="QoS levels, comma-separated [0,1]")
    ap.add_argument("--peer-tls", action="store_true",
                    help="TLS peer links (cluster_certfile etc., certificates from deploy/make-certs.sh)")
    ap.add_argument("--out", default=os.path.join("bench-results", "cluster"),
                    help="directory for results.md, the raw starling-bench JSON and the node logs "
                         "[bench-results/cluster]")
    return ap.parse_args()


def load_harness(starlingd):
    """tests/cluster/harness.py for starlingd (it reads STARLINGD when imported)."""
    os.environ["STARLINGD"] = starlingd
    sys.path.insert(0, os.path.join(REPO, "tests", "cluster"))
    import harness
    return harness


def start_setup(harness, kind, root, settings):
    """A one-node or three-node Starling, listening and agreeing on a leader."""
    Cluster, Node = harness.Cluster, harness.Node
    if kind == "1 node":
        nodes = [Node(os.path.join(root, "single"), 1, "127.0.0.1", settings)]
    else:
        nodes = [Node(os.path.join(root, "node%d" % i), i, "127.0.0.%d" % i, settings) for i in (1, 2, 3)]
        for n in nodes:
            n.peers = [(x.id, x.host, x.cluster_port) for x in nodes]
    cluster = Cluster(nodes).start()
    cluster.wait_leader()
    return cluster


def placements(cluster, pattern, args):
    """([(node, clients, extra args)] for the subscriber processes, the same for the publishers)."""
    first, second, third = (cluster.nodes * 3)[:3]
    if pattern == "fan-in":
        half = args.publishers // 2
        return ([(first, 1, ["-t", "fanin/+"])],
                [(second, half, ["-t", "fanin/%i"]), (third, args.publishers - half, ["-t", "fanin/%i", "-n", half])])
    half = args.subscribers // 2
    return ([(second, half, ["-t", "fanout/all"]), (third, args.subscribers - half, ["-t", "fanout/all", "-n", half])],
            [(first, 1, ["-t", "fanout/all"])])


def run_scenario(bench, cluster, setup, pattern, qos, args, rawdir):
    Bench = compare.Bench
    tag = "%s-%s-q%d" % (setup.replace(" ", ""), pattern, qos)
    sub_at, pub_at = placements(cluster, pattern, args)

    def argv(node, count, extra):
        return ["-h", node.host, "-p", node.port, "-q", qos, "-c", count, "-i", 0] + extra

    subs = [Bench(bench, "sub", argv(*where) + ["-d", args.duration + 120], rawdir, "%s-sub%d" % (tag, i))
            for i, where in enumerate(sub_at)]
    if not all(s.wait_ready() for s in subs):
        for s in subs:
            s.interrupt()
        raise RuntimeError("subscribers did not get ready: " + "".join(subs[0].stderr_lines[-3:]))
    window = ["-F", 10] if qos else []
    pubs = [Bench(bench, "pub", argv(*where) + ["-I", 0, "-w", "-d", args.duration, "-s", 256] + window, rawdir,
                  "%s-pub%d" % (tag, i)) for i, where in enumerate(pub_at)]
    published = [p.result(timeout=args.duration + 120) for p in pubs]
    received = compare.drain(subs)
    sent = sum(p["publish"]["sent"] for p in published)
    count = sum(s["receive"]["count"] for s in received)
    window_s = max(s["receive"]["window_s"] for s in received)
    copies = sum(n for _, n, _ in sub_at) if pattern == "fan-out" else 1
    return {"rate": count / window_s if window_s else 0.0, "recv": count, "expected": sent * copies,
            "p50_ms": max(s["latency_us"]["p50"] for s in received) / 1000.0,
            "p99_ms": max(s["latency_us"]["p99"] for s in received) / 1000.0}


def cell(r, key, fmt):
    if r is None:
        return "-"
    if "error" in r:
        return "failed"
    return fmt.format(r[key])


def table(results, qoss, args):
    lines = ["| workload | QoS | 1 node msg/s | 3 nodes msg/s | 3 nodes / 1 node | delivered 1 / 3 | "
             "p50 ms 1 / 3 | p99 ms 1 / 3 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for pattern in PATTERNS:
        for qos in qoss:
            one, three = results.get(("1 node", pattern, qos)), results.get(("3 nodes", pattern, qos))
            ok = one and three and "error" not in one and "error" not in three and one["rate"]
            ratio = "%.2fx" % (three["rate"] / one["rate"]) if ok else "-"
            delivered = " / ".join("-" if r is None or "error" in r else "%.1f%%" % (
                100.0 * r["recv"] / r["expected"] if r["expected"] else 0.0) for r in (one, three))
            label = "%s %s" % (pattern, "%d:1" % args.publishers if pattern == "fan-in" else "1:%d" % args.subscribers)
            lines.append("| %s | %d | %s | %s | %s | %s | %s / %s | %s / %s |" % (
                label, qos, cell(one, "rate", "{:.0f}"), cell(three, "rate", "{:.0f}"), ratio, delivered,
                cell(one, "p50_ms", "{:.2f}"), cell(three, "p50_ms", "{:.2f}"),
                cell(one, "p99_ms", "{:.2f}"), cell(three, "p99_ms", "{:.2f}")))
    errors = ["- %s %s QoS %d: %s" % (k[0], k[1], k[2], r["error"]) for k, r in results.items() if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else []))


def main():
    args = parse_args()
    qoss = [int(q) for q in args.qos.split(",")]
    if not os.access(args.starlingd, os.X_OK):
        sys.exit("cluster_bench.py: no starlingd at %s (build it, or pass --starlingd)" % args.starlingd)
    harness = load_harness(args.starlingd)
    certs = None
    if args.peer_tls:
        certs = tempfile.mkdtemp(prefix="starling-cluster-bench-certs-")
        harness.CERTS = harness.make_certs(certs)
    harness.PEER_TLS = args.peer_tls
    bench = compare.find_bench(args.bench)
    rawdir = os.path.join(args.out, "raw")
    os.makedirs(rawdir, exist_ok=True)
    tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else None
    settings = {"max_inflight": compare.MAX_INFLIGHT, "max_queued": compare.MAX_QUEUED, "sys_interval": 0}
    results = {}
    t0 = time.monotonic()
    for setup in SETUPS:
        root = tempfile.mkdtemp(prefix="starling-cluster-bench-", dir=tmpfs)
        log("cluster_bench.py: %s" % setup)
        cluster = None
        try:
            cluster = start_setup(harness, setup, root, settings)
            for pattern in PATTERNS:
                for qos in qoss:
                    log("  %s QoS %d ..." % (pattern, qos))
                    try:
                        r = run_scenario(bench, cluster, setup, pattern, qos, args, rawdir)
                        log("    %.0f msg/s, delivered %d of %d" % (r["rate"], r["recv"], r["expected"]))
                    except RuntimeError as e:
                        r = {"error": str(e)}
                        log("    failed: %s" % e)
                    results[(setup, pattern, qos)] = r
        except AssertionError as e:   # the harness's waits
            log("  %s did not start: %s" % (setup, str(e)[:2000]))
            for pattern in PATTERNS:
                for qos in qoss:
                    results[(setup, pattern, qos)] = {"error": "did not start"}
        finally:
            for n in cluster.nodes if cluster else []:
                n.terminate()
            logs = os.path.join(args.out, "logs", setup.replace(" ", ""))
            shutil.rmtree(logs, ignore_errors=True)
            shutil.copytree(root, logs, ignore=shutil.ignore_patterns("data"))
            shutil.rmtree(root, ignore_errors=True)
    report = "\n".join([
        "# Starling cluster forwarding, %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "",
        "- machine: %s" % compare.machine(),
        "- starlingd: %s; load: %s; peer links: %s" % (args.starlingd, bench,
                                                       "TLS" if args.peer_tls else "plaintext"),
        "- %g s of publishing per run at the maximum rate, 256-byte payloads, MQTT 5, QoS 1 publishers keep 10 "
        "messages in flight; max inflight %d, max queued %d; data directories in tmpfs; fan-in: publishers on "
        "nodes 2 and 3, the subscriber on node 1; fan-out: the publisher on node 1, subscribers on nodes 2 and 3 "
        "(all on the one node for the 1-node run); %.0f s in all" % (
            args.duration, compare.MAX_INFLIGHT, compare.MAX_QUEUED, time.monotonic() - t0),
        "", table(results, qoss, args), "",
        "msg/s: messages delivered per second at the subscribers; delivered: received / published (times the "
        "subscribers for fan-out); p50 / p99: the worst subscriber process's end-to-end latency, mostly "
        "queueing at the maximum rate.", ""])
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(report)
    if certs:
        shutil.rmtree(certs, ignore_errors=True)
    print(report)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
