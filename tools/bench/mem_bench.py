#!/usr/bin/python3
"""Memory per idle connection: Starling next to Mosquitto in the same run.

For each broker (a fresh process, the settings of compare.py) and each
protocol (MQTT 3.1.1 and 5.0): opens N connections, each sending a CONNECT
(clean session, a short client id, keep alive 600 s) and waiting for its
CONNACK, holds them idle, and reads the broker's resident memory (VmRSS)
before and after:  KiB per connection = (RSS held - RSS before) / N.

The clients are one Python process per 15,000 connections (selectors, no
thread per socket), spread over the source addresses 127.0.0.2.. so that
100,000 connections do not run out of ephemeral ports. Each broker process
needs N + a few hundred descriptors: the hard RLIMIT_NOFILE of this shell
must allow it (the script raises the soft limit to the hard one; raising
the hard one needs CAP_SYS_RESOURCE, e.g. `ulimit -Hn 300000` as root).

  /usr/bin/python3 tools/bench/mem_bench.py                 # 10,000
  /usr/bin/python3 tools/bench/mem_bench.py -n 10000 -n 100000 --versions 4,5

Prints a Markdown table (both brokers side by side, the ratio).
"""

import argparse
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the broker classes)

PER_PROCESS = 15000
IN_FLIGHT = 200


def connect_packet(version, cid):
    cid = cid.encode()
    if version == 5:
        var = b"\x00\x04MQTT\x05\x02" + struct.pack(">H", 600) + b"\x00"  # no properties
    else:
        var = b"\x00\x04MQTT\x04\x02" + struct.pack(">H", 600)
    body = var + struct.pack(">H", len(cid)) + cid
    n = len(body)
    rl = b""
    while True:
        d = n % 128
        n //= 128
        rl += bytes([d | (0x80 if n else 0)])
        if not n:
            break
    return b"\x10" + rl + body


def client(port, version, first, count):
    """Child mode: opens count connections, prints "ready <connected> <refused>"
    once all are answered, then holds them until stdin closes."""
    sel = selectors.DefaultSelector()
    socks = []
    connected = refused = 0
    nxt = 0
    inflight = 0

    def start(i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((f"127.0.{2 + i // 250 // 250 % 250}.{2 + i // 250 % 250}", 0))
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE, [i, b""])
        socks.append(s)

    while connected + refused < count:
        while nxt < count and inflight < IN_FLIGHT:
            start(first + nxt)
            nxt += 1
            inflight += 1
        for key, ev in sel.select(timeout=5):
            s, data = key.fileobj, key.data
            if ev & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    sel.unregister(s)
                    refused += 1
                    inflight -= 1
                    continue
                s.send(connect_packet(version, f"m{version}-{data[0]}"))
                sel.modify(s, selectors.EVENT_READ, data)
                continue
            try:
                got = s.recv(64)
            except OSError:
                got = b""
            if not got:
                sel.unregister(s)
                refused += 1
                inflight -= 1
                continue
            data[1] += got
            if len(data[1]) >= 4 and len(data[1]) >= 2 + data[1][1]:
                sel.unregister(s)
                inflight -= 1
                if data[1][0] == 0x20 and data[1][3] == 0:
                    connected += 1
                else:
                    refused += 1
    print(f"ready {connected} {refused}", flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


def rss_parts(broker):
    """RssAnon / RssFile / RssShmem of the broker, KiB."""
    parts = {}
    try:
        with open(f"/proc/{broker.proc.pid}/status") as f:
            for line in f:
                if line.startswith("Rss"):
                    k, v = line.split(":")
                    parts[k[3:]] = int(v.split()[0])
    except OSError:
        pass
    return parts


def measure(broker, n, version):
    before = broker.rss_kb()
    parts0 = rss_parts(broker)
    kids = []
    for k in range(0, n, PER_PROCESS):
        cnt = min(PER_PROCESS, n - k)
        kids.append(subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", str(broker.port), str(version),
             str(k), str(cnt)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=compare.raise_nofile))
    connected = refused = 0
    for p in kids:
        line = p.stdout.readline().split()
        if len(line) == 3:
            connected += int(line[1])
            refused += int(line[2])
    time.sleep(2.0)  # let the broker settle
    held = broker.rss_kb()
    parts = rss_parts(broker)
    compare.log(f"{broker.name}: " + ", ".join(f"{k} +{parts[k] - parts0.get(k, 0)} KiB" for k in parts))
    for p in kids:
        p.stdin.close()
    for p in kids:
        p.wait()
    return before, held, connected, refused


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, action="append", help="connections (repeatable; default 10000)")
    ap.add_argument("--versions", default="4,5", help="MQTT protocol levels: 4 (3.1.1), 5")
    ap.add_argument("--starling", default=os.path.join(compare.REPO, "build", "broker", "starlingd"))
    ap.add_argument("--mosquitto", default="mosquitto")
    ap.add_argument("--only", choices=("starling", "mosquitto"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a Starling setting (repeatable), e.g. snapshot_trailing=0")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        compare.raise_nofile()
        client(int(a.child[0]), int(a.child[1]), int(a.child[2]), int(a.child[3]))
        return
    compare.raise_nofile()
    sizes = a.n or [10000]
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    compare.MAX_CONNECTIONS = max(sizes) + 1000
    # no admin API: its fixed default port may be taken by another broker
    extra = [x for kv in ["admin_listen=off"] + a.set for x in ("--set", kv)]

    class Starling(compare.Starling):
        def command(self):
            return super().command() + extra

    work = tempfile.mkdtemp(prefix="mem-bench-")
    rows = []
    for n in sizes:
        if n + 200 > limit:
            compare.log(f"{n} connections: the descriptor limit is {limit} (ulimit -Hn); skipped")
            continue
        for version in [int(v) for v in a.versions.split(",")]:
            res = {}
            for cls, binary in ((compare.Mosquitto, a.mosquitto), (Starling, a.starling)):
                if a.only and cls.name != a.only:
                    continue
                br = cls(work, binary)
                if not br.start():
                    compare.log(f"{cls.name} did not start (see {work})")
                    continue
                time.sleep(0.5)
                try:
                    before, held, ok, bad = measure(br, n, version)
                finally:
                    br.stop()
                res[cls.name] = (before, held, ok, bad)
                compare.log(f"{cls.name} v{version} {n}: RSS {before} -> {held} KiB, {ok} connected, "
                            f"{bad} refused: {(held - before) / max(ok, 1):.3f} KiB/conn")
            rows.append((n, version, res))
    print("| connections | MQTT | Mosquitto KiB/conn | Starling KiB/conn | ratio | RSS before -> held KiB M / S |")
    print("|---|---|---|---|---|---|")
    for n, version, res in rows:
        per = {k: (v[1] - v[0]) / max(v[2], 1) for k, v in res.items()}
        m, s = per.get("mosquitto"), per.get("starling")
        ratio = f"{s / m:.2f}x" if m and s else ""
        rss = " / ".join(f"{res[k][0]:,} -> {res[k][1]:,}" for k in ("mosquitto", "starling") if k in res)
        fmt = lambda x: f"{x:.2f}" if x is not None else ""
        print(f"| {n:,} | {'5.0' if version == 5 else '3.1.1'} | {fmt(m)} | {fmt(s)} | {ratio} | {rss} |")


if __name__ == "__main__":
    main()
