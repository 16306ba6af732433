#!/usr/bin/python3
"""Connect rate: Starling next to Mosquitto, alternating rounds, medians.

For each (clients, in flight) pair, each round starts a fresh Mosquitto and a
fresh Starling (in alternating order) with compare.py's settings, connects the
clients with `starling-bench conn -c N -i 0 --max-connecting F`, and reads
the connect rate, the connect-time p50 / p99 and the broker's CPU seconds per
1,000 connects (user + system from /proc, from the first connect until every
client has disconnected again). The medians over the rounds are printed as a
Markdown table with the ratio Starling / Mosquitto, next to the load average
of the machine during the run: on a shared machine the CPU figure moves less
than the rate.

  /usr/bin/python3 tools/bench/connect_bench.py                       # 5,000 and 18,000 x 50 and 500, 5 rounds
  /usr/bin/python3 tools/bench/connect_bench.py --clients 5000 --inflight 50 --rounds 3

Clients are limited by the open-files limit of this process (one descriptor
per client in the load generator and in the broker): above it the script
says so and skips the row.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the brokers and the load generator wrapper)


def source_addrs(run):
    """Loopback source addresses of one run, four of them, different for every
    run: the ports of the previous runs' connections stay in TIME_WAIT for a
    minute, and one source address has only ~28,000 of them."""
    return ",".join(f"127.77.{run % 250 + 1}.{j}" for j in range(1, 5))


def one_run(broker, bench, clients, inflight, rawdir, tag, run):
    """One connect run against a started broker: (rate, p50 ms, p99 ms, CPU s per 1,000)."""
    cpu0 = broker.cpu_s()
    c = compare.Bench(bench, "conn", ["-h", "127.0.0.1", "-p", broker.port, "-c", clients, "-i", 0,
                                      "--max-connecting", inflight, "--ifaddr", source_addrs(run),
                                      "-d", 600], rawdir, tag)
    if not c.wait_ready(timeout=300):
        c.interrupt()
        raise RuntimeError("did not finish: " + "".join(c.stderr_lines[-3:]))
    c.interrupt()
    r = c.result()["connect"]
    if r["connected"] != clients:
        raise RuntimeError(f"{r['connected']} of {clients} connected")
    t = r["time_us"]
    return (r["rate_per_s"], t["p50"] / 1000.0, t["p99"] / 1000.0,
            (broker.cpu_s() - cpu0) * 1000.0 / clients)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    compare.broker_arguments(ap, "bench-results/connect")
    ap.add_argument("--clients", default="5000,18000", help="comma list of client counts [5000,18000]")
    ap.add_argument("--inflight", default="50,500", help="comma list of connects in flight [50,500]")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per row [5]")
    args = ap.parse_args()
    bench = compare.find_bench(args.bench)
    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="starling-connect-")
    compare.raise_nofile()
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200
    makers = {"mosquitto": lambda: compare.Mosquitto(workdir, args.mosquitto),
              "starling": lambda: compare.Starling(workdir, args.starlingd)}
    lines = ["| clients, in flight | Mosquitto conn/s | Starling conn/s | ratio | p50 / p99 ms M | "
             "p50 / p99 ms S | CPU s per 1,000 M / S | load average |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    run = 0
    for clients in (int(x) for x in args.clients.split(",")):
        if clients > limit or clients > compare.MAX_CONNECTIONS:
            compare.log(f"connect_bench: {clients} clients skipped: the open-files limit here allows "
                        f"{min(limit, compare.MAX_CONNECTIONS)}")
            continue
        for inflight in (int(x) for x in args.inflight.split(",")):
            runs = {"mosquitto": [], "starling": []}
            loads = []
            for rnd in range(args.rounds):
                order = ["mosquitto", "starling"] if rnd % 2 == 0 else ["starling", "mosquitto"]
                for name in order:
                    b = makers[name]()
                    if not b.start():
                        b.stop()
                        sys.exit(f"connect_bench: {name} did not start (log in {workdir})")
                    try:
                        run += 1
                        x = one_run(b, bench, clients, inflight, args.out, f"{name}-{clients}-{inflight}-{rnd}",
                                    run)
                    except RuntimeError as e:
                        compare.log(f"  {name} {clients}/{inflight} round {rnd}: failed: {e}")
                        continue
                    finally:
                        b.stop()
                    runs[name].append(x)
                    loads.append(os.getloadavg()[0])
                    compare.log(f"  {name} {clients} clients, {inflight} in flight, round {rnd}: {x[0]:.0f}/s "
                                f"p50 {x[1]:.2f} p99 {x[2]:.2f} ms, {x[3]:.3f} CPU s per 1,000")
            if not runs["mosquitto"] or not runs["starling"]:
                continue
            med = {n: [statistics.median(v[i] for v in runs[n]) for i in range(4)] for n in runs}
            m, s = med["mosquitto"], med["starling"]
            lines.append(f"| {clients:,}, {inflight} | {m[0]:,.0f} | {s[0]:,.0f} | {s[0] / m[0]:.2f}x | "
                         f"{m[1]:.2f} / {m[2]:.2f} | {s[1]:.2f} / {s[2]:.2f} | {m[3]:.3f} / {s[3]:.3f} | "
                         f"{statistics.median(loads):.1f} |")
    table = "\n".join(lines) + "\n"
    note = (f"\nmedians of {args.rounds} alternating rounds; a fresh broker per run; "
            f"machine: {compare.machine()}\n")
    with open(os.path.join(args.out, "connect.md"), "w") as f:
        f.write(table + note)
    print(table + note)


if __name__ == "__main__":
    main()
