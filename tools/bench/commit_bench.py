#!/usr/bin/python3
"""Raft commit cost: acknowledged SUBSCRIBEs, retained QoS 1 PUBLISHes and CONNECTs per second.

Starling acknowledges a SUBSCRIBE (SUBACK), a retained PUBLISH (PUBACK) and a
CONNECT (CONNACK, the session claim) only once the change is committed in its
Raft log. This script measures what that costs, side by side in one run:

  mosquitto                       /usr/sbin/mosquitto, persistence false: a
                                  reference point that does not replicate
  starling 1 node                 a one-voter Raft cluster
  starling 3 nodes via leader     clients on the leader
  starling 3 nodes via follower   clients on a follower: proposals are
                                  forwarded to the leader, and the follower
                                  acknowledges once it applied the entry itself

Scenarios (a fresh broker / cluster for each):
  subscribe w=W          every op is a SUBSCRIBE with one new filter
                         (bench/s<W>/<client>/<seq>); latency SUBSCRIBE -> SUBACK
  retained publish w=W   every op is a QoS 1 retained PUBLISH to a new topic
                         (bench/r<W>/<client>/<seq>); latency PUBLISH -> PUBACK
  connect                N CONNECTs (MQTT 5, clean start, session expiry, a new
                         client id each, then DISCONNECT), C at a time;
                         latency CONNECT -> CONNACK

-c clients each keep W operations in flight for -d seconds (after a short
warm-up that is not recorded). A reason code >= 0x80 is an error, not a
success. The load comes from asyncio worker processes (raw MQTT 5 over TCP);
their CPU time is printed, and a warning says when a worker was busy for more
than 80 % of the wall time (the figures are then a lower bound).

Data directories are on the real disk by default (the Raft log is written with
O_DIRECT / fsync: that is what is measured); --tmpfs puts them in /dev/shm.

Writes results.md, results.csv, details.json, results.png (when matplotlib is
installed) and the broker logs and configs (logs/) to
--out (default bench-results/commit). A benchmark prints figures; it asserts
nothing about them. Exit status 1 when a setup failed to start or a scenario
had errors.

  /usr/bin/python3 tools/bench/commit_bench.py
  /usr/bin/python3 tools/bench/commit_bench.py --tmpfs -c 100 -w 1,4,16 -d 10
  /usr/bin/python3 tools/bench/commit_bench.py --setups 1node,3follower --scenarios sub
"""

import argparse
import array
import asyncio
import csv
import ctypes
import datetime
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")
LEADER_RE = re.compile(r"cluster: leader is node (\d+) \(term (\d+)\)")
LOG_LEVEL_RE = re.compile(r"^\S+ (warn|error|fatal)\b")

SETUPS = [
    ("mosquitto", "mosquitto"),
    ("1node", "starling 1 node"),
    ("3leader", "starling 3 nodes via leader"),
    ("3follower", "starling 3 nodes via follower"),
]
SETUP_LABEL = dict(SETUPS)

START_TIMEOUT = 30.0     # seconds for a broker / cluster to become ready
CONNECT_TIMEOUT = 10.0   # seconds for one CONNECT -> CONNACK
DRAIN_TIMEOUT = 15.0     # seconds to wait for outstanding acks after the run (> commit_timeout_ms)
CPU_WARN = 0.80          # client busy fraction above which the figures are a lower bound
MACHINE_WARN = 0.85      # all CPUs busy (load + brokers) above this fraction


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- MQTT 5 packets -----------------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, pos):
    """(value, next position), or (None, pos) when buf ends first; ValueError if malformed."""
    value = 0
    shift = 0
    for i in range(4):
        if pos + i >= len(buf):
            return None, pos
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ValueError("malformed variable byte integer")


def utf8(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id, keepalive, expiry):
    props = b"\x11" + struct.pack(">I", expiry)  # Session Expiry Interval
    body = (b"\x00\x04MQTT" + bytes([5, 0x02]) + struct.pack(">H", keepalive)  # v5, clean start
            + varint(len(props)) + props + utf8(client_id))
    return packet(0x10, body)


def subscribe_packet(pid, topic_filter, qos=1):
    return packet(0x82, struct.pack(">H", pid) + b"\x00" + utf8(topic_filter) + bytes([qos]))


def publish_packet(pid, topic, payload):
    # QoS 1 (0x02) + retain (0x01); no properties
    return packet(0x33, utf8(topic) + struct.pack(">H", pid) + b"\x00" + payload)


DISCONNECT = b"\xe0\x00"

# property id -> kind; kinds: 1 byte, 2 two-byte int, 4 four-byte int, v varint,
# s UTF-8 string, b binary data, p string pair
PROP_KIND = {0x01: 1, 0x02: 4, 0x03: "s", 0x08: "s", 0x09: "b", 0x0B: "v", 0x11: 4, 0x12: "s",
             0x13: 2, 0x15: "s", 0x16: "b", 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: "s", 0x1C: "s",
             0x1F: "s", 0x21: 2, 0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x26: "p", 0x27: 4,
             0x28: 1, 0x29: 1, 0x2A: 1}


def parse_props(buf, pos):
    """Properties starting at buf[pos] (length first) -> (dict id -> value, next position)."""
    length, pos = read_varint(buf, pos)
    if length is None:
        raise ValueError("truncated properties")
    end = pos + length
    props = {}
    while pos < end:
        pid = buf[pos]
        pos += 1
        kind = PROP_KIND.get(pid)
        if kind == 1:
            value = buf[pos]
            pos += 1
        elif kind == 2:
            value = struct.unpack_from(">H", buf, pos)[0]
            pos += 2
        elif kind == 4:
            value = struct.unpack_from(">I", buf, pos)[0]
            pos += 4
        elif kind == "v":
            value, pos = read_varint(buf, pos)
        elif kind in ("s", "b"):
            n = struct.unpack_from(">H", buf, pos)[0]
            value = bytes(buf[pos + 2:pos + 2 + n])
            pos += 2 + n
            if kind == "s":
                value = value.decode(errors="replace")
        elif kind == "p":
            n = struct.unpack_from(">H", buf, pos)[0]
            k = bytes(buf[pos + 2:pos + 2 + n]).decode(errors="replace")
            pos += 2 + n
            n = struct.unpack_from(">H", buf, pos)[0]
            value = (k, bytes(buf[pos + 2:pos + 2 + n]).decode(errors="replace"))
            pos += 2 + n
        else:
            raise ValueError(f"unknown property 0x{pid:02X}")
        props[pid] = value
    return props, end


# --- the load: one asyncio loop per worker process -----------------------------------------

class Stats:
    """What one worker collects during one scenario."""

    def __init__(self):
        self.lat = array.array("q")     # ns, successful ops started in the window
        self.done = array.array("q")    # perf_counter_ns of each of their acks
        self.errors = {}                # kind -> count, ops started in the window
        self.sent = 0                   # ops started in the window
        self.warm_ops = 0
        self.warm_errors = 0
        self.unexpected = 0             # acks for unknown packet ids

    def error(self, kind):
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Client(asyncio.Protocol):
    """One MQTT 5 connection keeping `window` SUBSCRIBEs or retained PUBLISHes in flight."""

    def __init__(self, run, index, client_id):
        self.run = run
        self.index = index
        self.client_id = client_id
        self.transport = None
        self.buf = bytearray()
        self.connack = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.inflight = {}   # packet id -> send time (ns)
        self.next_pid = 0
        self.seq = 0
        self.lost = None     # why the connection ended, when it did so unasked
        self.finished = False

    # transport callbacks
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(None)
        if self.lost is None and not self.run.closing:
            self.lose("connection lost" if exc is None else f"connection lost: {exc}")

    def data_received(self, data):
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        try:
            while n - pos >= 2:
                rl, body = read_varint(buf, pos + 1)
                if rl is None or body + rl > n:
                    break
                self.on_packet(buf[pos], buf[body:body + rl])
                pos = body + rl
        except (ValueError, struct.error, IndexError) as e:
            self.lose(f"bad packet from broker: {e}")
            self.transport.close()
            return
        if pos:
            del buf[:pos]

    # packets
    def on_packet(self, first, body):
        kind = first >> 4
        if kind == 4:  # PUBACK
            pid = (body[0] << 8) | body[1]
            self.complete(pid, body[2] if len(body) > 2 else 0)
        elif kind == 9:  # SUBACK
            pid = (body[0] << 8) | body[1]
            _, pos = parse_props(body, 2)
            self.complete(pid, body[pos] if pos < len(body) else 0x80)
        elif kind == 2:  # CONNACK
            props = {}
            if len(body) > 2:
                props, _ = parse_props(body, 2)
            if not self.connack.done():
                self.connack.set_result((body[1], props))
        elif kind == 3:  # PUBLISH (not expected): acknowledge QoS 1
            qos = (first >> 1) & 3
            if qos:
                tlen = (body[0] << 8) | body[1]
                pid = body[2 + tlen:4 + tlen]
                self.transport.write(bytes([0x40 if qos == 1 else 0x50, 2]) + bytes(pid))
        elif kind == 14:  # DISCONNECT from the broker
            reason = body[0] if body else 0
            self.lose(f"DISCONNECT 0x{reason:02X} from broker")
        # PINGRESP and the rest: ignored

    def lose(self, why):
        if self.lost is not None:
            return
        self.lost = why
        if not self.connack.done():
            self.connack.set_result((None, why))
        run = self.run
        for start in self.inflight.values():
            if start >= run.t_measure:
                run.stats.error(why)
        self.inflight.clear()
        self.finish()

    def finish(self):
        if not self.finished:
            self.finished = True
            self.run.client_finished()

    # operations
    def issue(self):
        run = self.run
        pid = self.next_pid % 65535 + 1
        while pid in self.inflight:
            pid = pid % 65535 + 1
        self.next_pid = pid
        self.seq += 1
        name = f"{run.prefix}/{self.index}/{self.seq}"
        if run.kind == "subscribe":
            data = subscribe_packet(pid, name)
        else:
            data = publish_packet(pid, name, run.payload)
        start = time.perf_counter_ns()
        self.inflight[pid] = start
        if start >= run.t_measure:
            run.stats.sent += 1
        self.transport.write(data)

    def complete(self, pid, reason):
        now = time.perf_counter_ns()
        run = self.run
        start = self.inflight.pop(pid, None)
        if start is None:
            run.stats.unexpected += 1
            return
        stats = run.stats
        if start >= run.t_measure:
            if reason >= 0x80:
                stats.error(f"reason 0x{reason:02X}")
            else:
                stats.lat.append(now - start)
                stats.done.append(now)
        else:
            stats.warm_ops += 1
            if reason >= 0x80:
                stats.warm_errors += 1
        if now < run.t_end and self.lost is None:
            self.issue()
        elif not self.inflight:
            self.finish()


class Run:
    """One worker's share of one scenario."""

    def __init__(self, spec):
        self.spec = spec
        self.kind = spec["kind"]
        self.prefix = spec.get("prefix", "")
        self.payload = b"r" * spec.get("payload", 0)
        self.stats = Stats()
        self.t_measure = 1 << 62
        self.t_end = 1 << 62
        self.closing = False
        self.clients = []
        self.unfinished = 0
        self.all_finished = None

    def client_finished(self):
        self.unfinished -= 1
        if self.unfinished <= 0 and self.all_finished and not self.all_finished.done():
            self.all_finished.set_result(None)

    async def open_client(self, index, client_id):
        loop = asyncio.get_running_loop()
        spec = self.spec
        _, c = await asyncio.wait_for(
            loop.create_connection(lambda: Client(self, index, client_id), spec["host"],
                                   spec["port"]), CONNECT_TIMEOUT)
        c.transport.write(connect_packet(client_id, spec["keepalive"], spec["expiry"]))
        reason, props = await asyncio.wait_for(c.connack, CONNECT_TIMEOUT)
        if reason is None:
            raise ConnectionError(f"{client_id}: {props}")
        if reason >= 0x80:
            text = props.get(0x1F, "") if isinstance(props, dict) else ""
            raise ConnectionError(f"{client_id}: CONNACK reason 0x{reason:02X} {text}".strip())
        return c, props

    async def connect_all(self):
        """Opens this worker's clients, 50 at a time. Returns the smallest Receive Maximum."""
        spec = self.spec
        ids = list(range(spec["first"], spec["first"] + spec["clients"]))
        recv_max = 65535
        for k in range(0, len(ids), 50):
            got = await asyncio.gather(*(self.open_client(
                i, f"cb-{spec['tag']}-{i}") for i in ids[k:k + 50]))
            for c, props in got:
                self.clients.append(c)
                recv_max = min(recv_max, props.get(0x21, 65535))
        return recv_max

    async def ops(self, t_go):
        """Warm-up, then the measured window; returns (cpu s, wall s) of the active period."""
        spec = self.spec
        loop = asyncio.get_running_loop()
        self.t_measure = t_go + int(spec["warmup"] * 1e9)
        self.t_end = self.t_measure + int(spec["duration"] * 1e9)
        delay = (t_go - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        w0 = time.perf_counter()
        self.all_finished = loop.create_future()
        self.unfinished = len(self.clients)
        for c in self.clients:
            if c.lost is not None:
                self.client_finished()
                continue
            for _ in range(spec["window"]):
                c.issue()
        rest = (self.t_end - time.perf_counter_ns()) / 1e9 + DRAIN_TIMEOUT
        try:
            await asyncio.wait_for(asyncio.shield(self.all_finished), max(rest, 0.1))
        except asyncio.TimeoutError:
            pass
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - w0
        for c in self.clients:
            for start in c.inflight.values():
                if start >= self.t_measure:
                    self.stats.error(f"no ack within {DRAIN_TIMEOUT:g} s after the run")
            c.inflight.clear()
        cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        return cpu, wall

    async def close_all(self):
        self.closing = True
        for c in self.clients:
            if c.transport and not c.transport.is_closing():
                c.transport.write(DISCONNECT)
                c.transport.close()
        waits = [c.closed for c in self.clients if not c.closed.done()]
        if waits:
            await asyncio.wait(waits, timeout=5)

    async def connects(self, t_go):
        """spec['count'] CONNECT / CONNACK / DISCONNECT cycles, spec['concurrency'] at a time."""
        spec = self.spec
        delay = (t_go - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        self.t_measure = 0
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        w0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        todo = list(range(spec["first"], spec["first"] + spec["count"]))
        todo.reverse()
        stats = self.stats

        async def one(i):
            cid = f"cb-{spec['tag']}-{i}"
            stats.sent += 1
            try:
                tr, c = await asyncio.wait_for(
                    loop.create_connection(lambda: Client(self, i, cid), spec["host"],
                                           spec["port"]), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as e:
                stats.error(f"TCP connect: {e.__class__.__name__}")
                return
            start = time.perf_counter_ns()
            tr.write(connect_packet(cid, spec["keepalive"], spec["expiry"]))
            try:
                reason, props = await asyncio.wait_for(c.connack, CONNECT_TIMEOUT)
                now = time.perf_counter_ns()
                if reason is None:
                    stats.error(props)
                elif reason >= 0x80:
                    stats.error(f"CONNACK 0x{reason:02X}")
                else:
                    stats.lat.append(now - start)
                    stats.done.append(now)
            except asyncio.TimeoutError:
                stats.error(f"no CONNACK within {CONNECT_TIMEOUT:g} s")
            c.lost = c.lost or "done"   # our own close from here on
            if not tr.is_closing():
                tr.write(DISCONNECT)
                tr.close()
            await c.closed

        async def lane():
            while todo:
                await one(todo.pop())

        await asyncio.gather(*(lane() for _ in range(spec["concurrency"])))
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        return ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
                time.perf_counter() - w0)


def worker_main(spec, pipe):
    """Entry of a load process: connect, report ready, wait for the start time, run, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent stops us
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    run = None
    try:
        run = Run(spec)
        recv_max = 65535
        if spec["kind"] != "connect":
            recv_max = loop.run_until_complete(run.connect_all())
        pipe.send(("ready", recv_max))
        msg = pipe.recv()
        if msg[0] != "go":
            return
        if spec["kind"] == "connect":
            cpu, wall = loop.run_until_complete(run.connects(msg[1]))
        else:
            cpu, wall = loop.run_until_complete(run.ops(msg[1]))
            loop.run_until_complete(run.close_all())
        st = run.stats
        pipe.send(("result", {
            "lat": st.lat.tobytes(), "done": st.done.tobytes(), "errors": st.errors,
            "sent": st.sent, "warm_ops": st.warm_ops, "warm_errors": st.warm_errors,
            "unexpected": st.unexpected, "cpu": cpu, "wall": wall,
        }))
    except Exception as e:  # reported to the parent, which prints it
        try:
            pipe.send(("error", f"{e.__class__.__name__}: {e}"))
        except OSError:
            pass
    finally:
        loop.close()


# --- processes the script starts -------------------------------------------------------------

STARTED = []   # every broker Popen, for cleanup
WORKERS = []   # every load Process, for cleanup


def _die_with_parent():
    """preexec_fn: the broker gets SIGKILL if this script dies without cleaning up."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def cleanup():
    for p in WORKERS:
        if p.is_alive():
            p.terminate()
    for p in WORKERS:
        p.join(timeout=3)
        if p.is_alive():
            p.kill()
            p.join()
    WORKERS.clear()
    for p in STARTED:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in STARTED:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    STARTED.clear()


class StartError(Exception):
    pass


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def probe_connack(host, port, timeout=2.0):
    """One MQTT 5 CONNECT; returns the CONNACK reason code (None: no answer / no TCP)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(connect_packet(f"cb-probe-{os.getpid()}-{time.monotonic_ns()}", 60, 0))
            data = b""
            while len(data) < 4:
                chunk = s.recv(256)
                if not chunk:
                    return None
                data += chunk
            if data[0] >> 4 != 2:
                return None
            reason = data[3]
            if reason == 0:
                s.sendall(DISCONNECT)
            return reason
    except OSError:
        return None


class Node:
    """One broker process with its stderr in a file."""

    def __init__(self, name, argv, logpath, host, port):
        self.name = name
        self.argv = argv
        self.logpath = logpath
        self.host = host
        self.port = port
        self.proc = None
        self.node_id = None

    def start(self):
        with open(self.logpath, "ab") as f:
            f.write(("$ " + " ".join(shlex.quote(a) for a in self.argv) + "\n").encode())
            f.flush()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        STARTED.append(self.proc)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, n=15):
        lines = self.log().splitlines()[-n:]
        return "\n".join("    | " + l for l in lines) or "    | (empty)"

    def cpu_s(self):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, ValueError, AttributeError):
            return 0.0

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def failure(self, what):
        state = (f"exited with status {self.proc.returncode}" if self.proc.poll() is not None
                 else "is running")
        return f"{self.name} {what} ({state}); last lines of {self.logpath}:\n{self.tail()}"

    def wait_ready(self, deadline):
        """Until the port accepts a CONNECT answered with CONNACK 0."""
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartError(self.failure("did not start"))
            last = probe_connack(self.host, self.port)
            if last == 0:
                return
            time.sleep(0.05)
        raise StartError(self.failure(
            f"not ready after {START_TIMEOUT:g} s (last CONNACK: "
            f"{'none' if last is None else f'0x{last:02X}'})"))


class Setup:
    """A broker or a cluster started fresh for one scenario; target() is where clients go."""

    def __init__(self, key, args, workdir, data_root):
        self.key = key
        self.args = args
        self.workdir = workdir
        self.data_root = data_root
        self.nodes = []
        self.target = None
        self.data_dirs = []
        self.info = ""
        self.leader = None

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        deadline = time.monotonic() + START_TIMEOUT
        if self.key == "mosquitto":
            port = free_port("127.0.0.1")
            conf = os.path.join(self.workdir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_connections -1\nlog_dest stderr\nlog_type error\nlog_type warning\n"
                        "connection_messages false\n")
            n = Node("mosquitto", [self.args.mosquitto, "-c", conf],
                     os.path.join(self.workdir, "mosquitto.log"), "127.0.0.1", port)
            self.nodes = [n]
            n.start()
            n.wait_ready(deadline)
            self.target = n
        elif self.key == "1node":
            port = free_port("127.0.0.1")
            data = tempfile.mkdtemp(prefix="node1-", dir=self.data_root)
            self.data_dirs.append(data)
            n = Node("starlingd", [self.args.starlingd, "-p", str(port), "--bind", "127.0.0.1",
                                   "--data-dir", data, "--set", "sys_interval=0",
                                   "--set", "log_level=warn", "--set", "admin_listen=off"],
                     os.path.join(self.workdir, "node1.log"), "127.0.0.1", port)
            n.node_id = 1
            self.nodes = [n]
            n.start()
            n.wait_ready(deadline)
            self.target = n
        else:
            self.start_cluster(deadline)
        return self.target

    def start_cluster(self, deadline):
        hosts = {i: f"127.0.0.{i}" for i in (1, 2, 3)}
        mqtt = {i: free_port(hosts[i]) for i in hosts}
        cport = {}
        for i in hosts:
            p = free_port(hosts[i])
            while p == mqtt[i]:
                p = free_port(hosts[i])
            cport[i] = p
        for i in hosts:
            data = tempfile.mkdtemp(prefix=f"node{i}-", dir=self.data_root)
            self.data_dirs.append(data)
            conf = os.path.join(self.workdir, f"node{i}.conf")
            with open(conf, "w") as f:
                f.write(f"node_id {i}\nlistener {mqtt[i]} {hosts[i]}\ndata_dir {data}\n"
                        f"cluster_name bench\ncluster_bind {hosts[i]}:{cport[i]}\n"
                        "cluster_secret benchsecret\n"
                        + "".join(f"peer {j} {hosts[j]}:{cport[j]}\n" for j in hosts)
                        + "sys_interval 0\nlog_level info\nadmin_listen off\n")
            n = Node(f"starlingd node {i}", [self.args.starlingd, "-c", conf],
                     os.path.join(self.workdir, f"node{i}.log"), hosts[i], mqtt[i])
            n.node_id = i
            self.nodes.append(n)
        for n in self.nodes:
            n.start()
        # the cluster is ready when a node reports a leader
        leader = None
        while leader is None:
            for n in self.nodes:
                if not n.alive():
                    raise StartError(n.failure("did not start"))
                m = LEADER_RE.findall(n.log())
                if m:
                    leader = int(m[-1][0])
                    break
            else:
                if time.monotonic() > deadline:
                    raise StartError(f"no node reported a leader after {START_TIMEOUT:g} s\n"
                                     + "\n".join(n.failure("log") for n in self.nodes))
                time.sleep(0.05)
        if leader not in (1, 2, 3):
            raise StartError(f"leader is node {leader}, not one of ours")
        self.leader = leader
        if self.key == "3leader":
            self.target = self.nodes[leader - 1]
        else:
            self.target = next(n for n in self.nodes if n.node_id != leader)
        # every node (the follower must know where to forward) reports the same leader
        for n in self.nodes:
            while True:
                seen = LEADER_RE.findall(n.log())
                if seen and int(seen[-1][0]) == leader:
                    break
                if seen and int(seen[-1][0]) != leader:
                    raise StartError(n.failure(f"reports leader {seen[-1][0]}, another node "
                                               f"reported {leader}"))
                if not n.alive():
                    raise StartError(n.failure("did not start"))
                if time.monotonic() > deadline:
                    raise StartError(n.failure(f"never reported leader {leader}"))
                time.sleep(0.05)
        for n in self.nodes:
            n.wait_ready(deadline)
        self.info = f"leader node {leader}, clients on node {self.target.node_id}"

    def cpu_s(self):
        return sum(n.cpu_s() for n in self.nodes)

    def log_marks(self):
        return [len(n.log()) for n in self.nodes]

    def log_since(self, marks):
        """(warn/error lines, leader-change lines) printed since marks, per node."""
        warn, leader = [], []
        for n, m in zip(self.nodes, marks):
            for line in n.log()[m:].splitlines():
                if line.startswith("$ "):
                    continue
                # mosquitto logs only errors and warnings here; starlingd says its level
                if n.name == "mosquitto" or LOG_LEVEL_RE.match(line):
                    warn.append(f"{n.name}: {line}")
                m = LEADER_RE.search(line)
                if (m and int(m.group(1)) != self.leader) or "cluster: no leader" in line:
                    leader.append(f"{n.name}: {line}")
        return warn, leader

    def stop(self):
        """Stops every node and removes its data dir unless --keep (the logs stay)."""
        codes = {}
        for n in self.nodes:
            codes[n.name] = n.stop()
        if not self.args.keep:
            for d in self.data_dirs:
                shutil.rmtree(d, ignore_errors=True)
        return codes


# --- one scenario ----------------------------------------------------------------------------

def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[k]


def run_load(spec_base, shares, timeout):
    """Starts one worker per share, waits until all are connected, starts them together,
    returns their results (or raises RuntimeError)."""
    ctx = multiprocessing.get_context("spawn")
    workers = []
    for share in shares:
        spec = dict(spec_base, **share)
        parent, child = ctx.Pipe()
        p = ctx.Process(target=worker_main, args=(spec, child), daemon=True)
        p.start()
        child.close()
        WORKERS.append(p)
        workers.append((p, parent))
    try:
        recv_max = 65535
        for p, pipe in workers:
            if not pipe.poll(60):
                raise RuntimeError("a load process did not connect its clients within 60 s")
            msg = pipe.recv()
            if msg[0] == "error":
                raise RuntimeError(f"clients could not connect: {msg[1]}")
            recv_max = min(recv_max, msg[1])
        t_go = time.perf_counter_ns() + 100_000_000   # perf_counter: CLOCK_MONOTONIC, shared
        for p, pipe in workers:
            pipe.send(("go", t_go))
        results = []
        for p, pipe in workers:
            if not pipe.poll(timeout):
                raise RuntimeError(f"a load process gave no result within {timeout:.0f} s")
            msg = pipe.recv()
            if msg[0] == "error":
                raise RuntimeError(f"load process failed: {msg[1]}")
            results.append(msg[1])
        return t_go, recv_max, results
    finally:
        for p, pipe in workers:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()
            WORKERS.remove(p)


def split(total, parts):
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def run_scenario(setup, scen, args, tag):
    """Runs one scenario against a started setup; returns a result row."""
    target = setup.target
    procs = max(1, min(args.procs, args.clients if scen["kind"] != "connect" else args.concurrency))
    base = {"kind": scen["kind"], "host": target.host, "port": target.port, "tag": tag,
            "expiry": args.session_expiry,
            "keepalive": min(65535, int(args.warmup + args.duration + DRAIN_TIMEOUT + 120))}
    shares = []
    first = 0
    if scen["kind"] == "connect":
        for count, conc in zip(split(args.connects, procs), split(args.concurrency, procs)):
            shares.append({"first": first, "count": count, "concurrency": max(1, conc)})
            first += count
        timeout = args.connects * CONNECT_TIMEOUT / max(1, args.concurrency) + 60
    else:
        base.update({"prefix": scen["prefix"], "payload": args.payload, "window": scen["window"],
                     "duration": args.duration, "warmup": args.warmup})
        for n in split(args.clients, procs):
            shares.append({"first": first, "clients": n})
            first += n
        timeout = args.warmup + args.duration + DRAIN_TIMEOUT + 30
    marks = setup.log_marks()
    cpu0 = setup.cpu_s()
    t_go, recv_max, results = run_load(base, shares, timeout)
    broker_cpu = setup.cpu_s() - cpu0
    warn, leader_lines = setup.log_since(marks)

    lat = array.array("q")
    done = array.array("q")
    errors = {}
    sent = warm_ops = warm_errors = unexpected = 0
    cpu = []
    wall = []
    for r in results:
        lat.frombytes(r["lat"])
        done.frombytes(r["done"])
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
        sent += r["sent"]
        warm_ops += r["warm_ops"]
        warm_errors += r["warm_errors"]
        unexpected += r["unexpected"]
        cpu.append(r["cpu"])
        wall.append(r["wall"])
    lat = sorted(lat)
    done = sorted(done)
    count = len(lat)
    n_err = sum(errors.values())
    if scen["kind"] == "connect":
        t0 = t_go
    else:
        t0 = t_go + int(args.warmup * 1e9)
    elapsed = (done[-1] - t0) / 1e9 if done else 0.0
    gaps = [b - a for a, b in zip(done, done[1:])]
    max_gap = max(gaps) / 1e6 if gaps else None
    busy = [c / w if w > 0 else 0.0 for c, w in zip(cpu, wall)]
    timeline = []   # acks per second of the window
    for t in done:
        k = (t - t0) // 1_000_000_000
        while len(timeline) <= k:
            timeline.append(0)
        timeline[k] += 1
    row = {
        "scenario": scen["label"], "setup": SETUP_LABEL[setup.key], "setup_key": setup.key,
        "setup_info": setup.info, "kind": scen["kind"], "window": scen.get("window"),
        "clients": args.clients if scen["kind"] != "connect" else args.concurrency,
        "sent": sent, "count": count, "errors": n_err, "error_kinds": errors,
        "ops_s": count / elapsed if elapsed > 0 else 0.0, "elapsed_s": elapsed,
        "p50_ms": ms(percentile(lat, 0.50)), "p90_ms": ms(percentile(lat, 0.90)),
        "p99_ms": ms(percentile(lat, 0.99)), "max_ms": ms(lat[-1] if lat else None),
        "max_gap_ms": max_gap, "per_second": timeline, "warmup_ops": warm_ops,
        "warmup_errors": warm_errors,
        "unexpected_acks": unexpected, "client_procs": len(results),
        "client_cpu_s": sum(cpu), "client_busy_max": max(busy) if busy else 0.0,
        "broker_cpu_s": broker_cpu,
        "broker_cpu_pct": 100.0 * broker_cpu / max(wall) if wall and max(wall) > 0 else None,
        "machine_busy": ((sum(cpu) + broker_cpu) / (max(wall) * (os.cpu_count() or 1))
                         if wall and max(wall) > 0 else 0.0),
        "receive_maximum": recv_max, "broker_warnings": warn, "leader_changes": leader_lines,
    }
    return row


def ms(ns):
    return None if ns is None else ns / 1e6


# --- report ----------------------------------------------------------------------------------

def machine_info(data_root):
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1048576:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    try:
        df = subprocess.run(["df", "-P", "-T", "-h", data_root], capture_output=True, text=True,
                            timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        df = "(df failed)"
    return {"cpu": model, "cpus": os.cpu_count(), "mem": mem,
            "kernel": " ".join(platform.uname()[i] for i in (0, 2, 3, 4)), "df": df,
            "python": platform.python_version()}


def fsync_probe(path, n=200):
    """Mean ms of a 4 KiB write + fdatasync in path: what one log flush costs at least."""
    try:
        fd, name = tempfile.mkstemp(prefix="fsync-probe-", dir=path)
    except OSError:
        return None
    try:
        buf = b"\0" * 4096
        t = time.perf_counter()
        for _ in range(n):
            os.pwrite(fd, buf, 0)
            os.fdatasync(fd)
        return (time.perf_counter() - t) / n * 1000.0
    finally:
        os.close(fd)
        os.unlink(name)


def fs_type(path):
    try:
        out = subprocess.run(["df", "-P", "-T", path], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()
        return out[1].split()[1]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def f2(v, fmt="{:.2f}"):
    return "" if v is None else fmt.format(v)


def errors_cell(r):
    if "failed" in r:
        return "failed"
    if not r["errors"]:
        return "0"
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(r["error_kinds"].items()))
    return f"{r['errors']} ({kinds})"


def write_markdown(path, rows, meta):
    mos = {r["scenario"]: r for r in rows if r["setup_key"] == "mosquitto" and "failed" not in r}
    with open(path, "w") as f:
        f.write(f"# Raft commit cost: Starling vs Mosquitto, {meta['date']}\n\n")
        f.write(f"- command: `{meta['command']}`\n")
        m = meta["machine"]
        f.write(f"- machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem']}; {m['kernel']}; "
                f"Python {m['python']}\n")
        f.write(f"- brokers: {meta['starling']} ({meta['starlingd']}), {meta['mosquitto']} "
                f"(persistence false)\n")
        f.write(f"- data dirs: {meta['data_root']} ({meta['data_mode']}; a 4 KiB write + "
                f"fdatasync there takes {f2(meta['fsync_ms'], '{:.3f}')} ms); `df -P -T -h`:\n\n")
        f.write("```\n" + m["df"] + "\n```\n\n")
        f.write(f"- load: {meta['load']}\n\n")
        f.write("| scenario | setup | count | ops/s | p50 ms | p90 ms | p99 ms | max ms | "
                "errors | vs mosquitto | client CPU | broker CPU |\n")
        f.write("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n")
        last = None
        for r in rows:
            name = r["scenario"] if r["scenario"] != last else ""
            last = r["scenario"]
            if "failed" in r:
                f.write(f"| {name} | {r['setup']} | | | | | | | failed: "
                        f"{r['failed'].splitlines()[0][:100]} | | | |\n")
                continue
            m0 = mos.get(r["scenario"])
            rel = (f"{r['ops_s'] / m0['ops_s']:.2f}x" if m0 and m0["ops_s"] and
                   r["setup_key"] != "mosquitto" else "")
            warn = " (!)" if r["client_busy_max"] > CPU_WARN else ""
            f.write(f"| {name} | {r['setup']} | {r['count']} | {r['ops_s']:.0f} | "
                    f"{f2(r['p50_ms'])} | {f2(r['p90_ms'])} | {f2(r['p99_ms'])} | "
                    f"{f2(r['max_ms'])} | {errors_cell(r)} | {rel} | "
                    f"{100 * r['client_busy_max']:.0f}%{warn} | "
                    f"{f2(r['broker_cpu_pct'], '{:.0f}%')} |\n")
        f.write("\ncount: operations started in the measured window and acknowledged with a "
                "reason code below 0x80 (errors: reason >= 0x80, a lost connection or no ack "
                "within the drain time, not counted in count or latency); ops/s: count / time "
                "from the start of the window to the last such ack; latency: SUBSCRIBE -> "
                "SUBACK, retained QoS 1 PUBLISH -> PUBACK, CONNECT -> CONNACK (the connect "
                "rate includes the TCP handshake and the DISCONNECT). vs mosquitto: ops/s "
                "relative to Mosquitto's in the same scenario. client CPU: the busiest load "
                "process's CPU time / wall time ((!) above 80 %: the client may be the "
                "bottleneck and the figures a lower bound); broker CPU: the broker processes' "
                "CPU time (all three nodes for a cluster) / wall time, 100 % = one core.\n")
        if meta["notes"]:
            f.write("\n## Notes\n\n")
            for n in meta["notes"]:
                f.write(f"- {n}\n")


CSV_KEYS = ["scenario", "setup", "setup_info", "clients", "window", "sent", "count", "ops_s",
            "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors", "error_kinds", "max_gap_ms",
            "warmup_ops", "warmup_errors", "client_procs", "client_cpu_s", "client_busy_max",
            "broker_cpu_s", "broker_cpu_pct", "machine_busy", "failed"]


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_KEYS)
        for r in rows:
            out = []
            for k in CSV_KEYS:
                v = r.get(k)
                if v is None:
                    v = ""
                elif k == "error_kinds":
                    v = "; ".join(f"{a}: {b}" for a, b in sorted(v.items()))
                elif isinstance(v, float):
                    v = f"{v:.3f}"
                out.append(v)
            w.writerow(out)


def write_plot(path, rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = [r for r in rows if "failed" not in r]
    if not ok:
        return False
    scen = list(dict.fromkeys(r["scenario"] for r in ok))
    setups = [k for k, _ in SETUPS if any(r["setup_key"] == k for r in ok)]
    colors = {"mosquitto": "#3b6ea5", "1node": "#e07b39", "3leader": "#5a9e4b",
              "3follower": "#b54a67"}
    fig, axes = plt.subplots(2, 1, figsize=(11, 9))
    width = 0.8 / max(1, len(setups))
    for ax, key, title in ((axes[0], "ops_s", "acknowledged operations / s (higher is better)"),
                           (axes[1], "p99_ms", "p99 latency, ms (lower is better)")):
        for k, s in enumerate(setups):
            vals = []
            for sc in scen:
                r = next((r for r in ok if r["scenario"] == sc and r["setup_key"] == s), None)
                vals.append((r or {}).get(key) or 0)
            pos = [x + (k - (len(setups) - 1) / 2) * width for x in range(len(scen))]
            ax.bar(pos, vals, width, label=SETUP_LABEL[s], color=colors.get(s))
            for x, v in zip(pos, vals):
                if v:
                    ax.annotate(f"{v:,.0f}" if key == "ops_s" else f"{v:.1f}", (x, v),
                                ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(scen)))
        ax.set_xticklabels(scen)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def notes_for(rows, args):
    """Things worth a look, from the figures and the broker logs."""
    notes = []
    for r in rows:
        where = f"{r['scenario']} / {r['setup']}"
        if "failed" in r:
            first, _, rest = r["failed"].partition("\n")
            notes.append(f"{where}: failed: {first}"
                         + (f"\n\n  ```\n{rest}\n  ```" if rest else ""))
            continue
        if r["errors"]:
            notes.append(f"{where}: {r['errors']} errors of {r['sent']} ops: "
                         + ", ".join(f"{k}: {v}" for k, v in sorted(r["error_kinds"].items())))
        if r["warmup_errors"]:
            notes.append(f"{where}: {r['warmup_errors']} errors during the warm-up")
        if r["unexpected_acks"]:
            notes.append(f"{where}: {r['unexpected_acks']} acks for unknown packet ids")
        if r["client_busy_max"] > CPU_WARN:
            notes.append(f"{where}: a load process was busy {100 * r['client_busy_max']:.0f} % "
                         f"of the wall time: the client may be the bottleneck, the figures are "
                         f"a lower bound (more processes: -P)")
        if r["machine_busy"] > MACHINE_WARN:
            notes.append(f"{where}: load + broker processes used {100 * r['machine_busy']:.0f} % "
                         f"of all {os.cpu_count()} CPUs: the machine, not only the broker, "
                         f"bounds this figure")
        if r["sent"] != r["count"] + r["errors"]:
            notes.append(f"{where}: {r['sent']} ops sent but {r['count']} acknowledged + "
                         f"{r['errors']} errors")
        if r.get("window") and r["receive_maximum"] < r["window"]:
            notes.append(f"{where}: the broker's Receive Maximum {r['receive_maximum']} is "
                         f"below the window {r['window']}")
        if r["max_gap_ms"] is not None and r["max_gap_ms"] > 500:
            notes.append(f"{where}: no ack at all for {r['max_gap_ms']:.0f} ms at one point "
                         f"(a stall)")
        sec = r.get("per_second") or []
        full = sec[:int(args.duration)] if r.get("window") else []
        if len(full) >= 3 and full[0] and full[-1] < 0.7 * full[0]:
            notes.append(f"{where}: throughput fell during the run: acks per second "
                         + ", ".join(str(x) for x in full))
        if r["leader_changes"]:
            notes.append(f"{where}: leadership changed during the run: "
                         + " | ".join(r["leader_changes"][:4]))
        if r["broker_warnings"]:
            notes.append(f"{where}: {len(r['broker_warnings'])} warning/error lines in the "
                         f"broker log, e.g. " + " | ".join(x[:160] for x in
                                                          r["broker_warnings"][:3]))
    by = {(r["scenario"], r["setup_key"]): r for r in rows if "failed" not in r}
    for sc in dict.fromkeys(r["scenario"] for r in rows):
        lead, fol = by.get((sc, "3leader")), by.get((sc, "3follower"))
        if lead and fol and lead["ops_s"] and fol["ops_s"] < 0.7 * lead["ops_s"]:
            notes.append(f"{sc}: via follower {fol['ops_s']:.0f} ops/s is "
                         f"{fol['ops_s'] / lead['ops_s']:.2f}x via leader "
                         f"({lead['ops_s']:.0f} ops/s); p50 {f2(fol['p50_ms'])} vs "
                         f"{f2(lead['p50_ms'])} ms")
    return notes


# --- main ------------------------------------------------------------------------------------

def scenarios(args):
    out = []
    wanted = set(args.scenarios.split(","))
    for kind, short, label, prefix in (("subscribe", "sub", "subscribe", "s"),
                                       ("publish", "pub", "retained publish", "r")):
        if short in wanted:
            for w in args.windows:
                out.append({"kind": kind, "label": f"{label} w={w}", "window": w,
                            "prefix": f"bench/{prefix}{w}", "id": f"{short}-w{w}"})
    if "connect" in wanted:
        out.append({"kind": "connect", "label": "connect", "id": "connect"})
    return out


def default_procs():
    return min(4, max(2, (os.cpu_count() or 1) // 3))


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("-c", "--clients", type=int, default=50, help="concurrent clients [50]")
    ap.add_argument("-w", "--window", default="1,8",
                    help="operations in flight per client; a comma list runs each [1,8]")
    ap.add_argument("-d", "--duration", type=float, default=5.0,
                    help="measured seconds per scenario [5]")
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="seconds of load before the measured window, not recorded [1]")
    ap.add_argument("--connects", type=int, default=2000, help="CONNECTs in the connect "
                    "scenario [2000]")
    ap.add_argument("--concurrency", type=int, default=50,
                    help="CONNECTs in flight in the connect scenario [50]")
    ap.add_argument("--payload", type=int, default=64, help="retained payload bytes [64]")
    ap.add_argument("--session-expiry", type=int, default=300,
                    help="Session Expiry Interval of every CONNECT, seconds [300]")
    ap.add_argument("-P", "--procs", type=int, default=default_procs(),
                    help=f"load processes (one asyncio loop each) [{default_procs()} here: "
                         f"CPUs / 3, 2..4]")
    ap.add_argument("--setups", default=",".join(k for k, _ in SETUPS),
                    help="comma list of " + ", ".join(k for k, _ in SETUPS) + " [all]")
    ap.add_argument("--scenarios", default="sub,pub,connect",
                    help="comma list of sub, pub, connect [all]")
    ap.add_argument("--tmpfs", action="store_true",
                    help="put the data dirs in /dev/shm instead of on the disk")
    ap.add_argument("--data-root", help="directory for the data dirs (default: the temp dir, "
                    "unless it is tmpfs, then --out)")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs")
    ap.add_argument("--out", default=os.path.join("bench-results", "commit"),
                    help="output directory [bench-results/commit]")
    ap.add_argument("--starlingd", default=os.path.join(REPO, "build", "broker", "starlingd"),
                    help="starlingd binary [build/broker/starlingd]")
    ap.add_argument("--mosquitto", default="/usr/sbin/mosquitto",
                    help="mosquitto binary [/usr/sbin/mosquitto]")
    args = ap.parse_args()

    me = "commit_bench.py"
    try:
        args.windows = [int(w) for w in args.window.split(",") if w.strip()]
    except ValueError:
        ap.error(f"-w: not a comma list of numbers: {args.window!r}")
    if not args.windows or min(args.windows) < 1 or max(args.windows) > 65535:
        ap.error("-w: each window must be in 1..65535")
    if args.clients < 1 or args.procs < 1 or args.connects < 1 or args.concurrency < 1:
        ap.error("-c, -P, --connects and --concurrency must be at least 1")
    if args.duration <= 0 or args.warmup < 0:
        ap.error("-d must be positive and --warmup not negative")
    setup_keys = [s.strip() for s in args.setups.split(",") if s.strip()]
    bad = [s for s in setup_keys if s not in SETUP_LABEL]
    if bad:
        ap.error(f"--setups: unknown {', '.join(bad)} (known: {', '.join(SETUP_LABEL)})")
    bad = [s for s in args.scenarios.split(",") if s not in ("sub", "pub", "connect")]
    if bad:
        ap.error(f"--scenarios: unknown {', '.join(bad)} (known: sub, pub, connect)")
    if any(k != "mosquitto" for k in setup_keys):
        args.starlingd = os.path.abspath(args.starlingd)
        if not os.path.isfile(args.starlingd):
            sys.exit(f"{me}: starlingd not found at {args.starlingd}; build it "
                     f"(meson compile -C build starlingd) or pass --starlingd PATH")
        if not os.access(args.starlingd, os.X_OK):
            sys.exit(f"{me}: {args.starlingd} is not executable")
    if "mosquitto" in setup_keys and not os.access(args.mosquitto, os.X_OK):
        sys.exit(f"{me}: mosquitto not found at {args.mosquitto}; install it (apt-get install "
                 f"mosquitto), pass --mosquitto PATH, or leave it out with --setups")
    if any(k.startswith("3") for k in setup_keys):
        for h in ("127.0.0.2", "127.0.0.3"):
            try:
                free_port(h)
            except OSError as e:
                sys.exit(f"{me}: cannot bind {h} ({e}); the 3-node setups need 127.0.0.1-3 "
                         f"on the loopback interface")

    if args.tmpfs:
        if not os.path.isdir("/dev/shm"):
            sys.exit(f"{me}: --tmpfs: /dev/shm does not exist")
        data_parent = "/dev/shm"
    elif args.data_root:
        data_parent = args.data_root
    else:
        data_parent = tempfile.gettempdir()
        if fs_type(data_parent) in ("tmpfs", "ramfs"):
            data_parent = args.out
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(data_parent, exist_ok=True)
    data_root = tempfile.mkdtemp(prefix="commit-bench-", dir=data_parent)
    data_fs = fs_type(data_root)
    fsync_ms = fsync_probe(data_root)
    data_mode = ("tmpfs, --tmpfs: the fsyncs cost nothing" if args.tmpfs
                 else f"{data_fs}, on disk" if data_fs not in ("tmpfs", "ramfs")
                 else f"{data_fs}: NOT a disk, the fsyncs cost nothing")
    logdir = os.path.join(args.out, "logs")
    shutil.rmtree(logdir, ignore_errors=True)

    def on_signal(sig, frame):
        raise KeyboardInterrupt(f"signal {sig}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    scens = scenarios(args)
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(shlex.quote(a) for a in ["/usr/bin/python3"] + sys.argv),
        "machine": machine_info(data_root),
        "starling": version([args.starlingd, "--version"]) if os.path.exists(args.starlingd)
        else "(no starlingd)",
        "starlingd": os.path.relpath(args.starlingd, REPO) if args.starlingd.startswith(REPO)
        else args.starlingd,
        "mosquitto": version([args.mosquitto, "-h"]).replace("mosquitto version", "Mosquitto"),
        "data_root": data_root, "data_mode": data_mode, "fsync_ms": fsync_ms,
        "load": (f"{args.clients} MQTT 5 clients (clean start, session expiry "
                 f"{args.session_expiry} s) from {args.procs} asyncio process(es), each keeping "
                 f"w ops in flight for {args.duration:g} s after a {args.warmup:g} s warm-up; "
                 f"a new filter / topic per op, retained payload {args.payload} bytes; connect: "
                 f"{args.connects} CONNECTs, {args.concurrency} in flight, a new client id "
                 f"each; a fresh broker / cluster per scenario; everything on this machine"),
    }
    log(f"{me}: data dirs under {data_root} ({data_mode}; 4 KiB write + fdatasync: "
        f"{f2(fsync_ms, '{:.3f}')} ms)")
    log(f"{me}: {len(setup_keys)} setups x {len(scens)} scenarios, {args.procs} load "
        f"process(es), results to {args.out}")
    rows = []
    failed_setups = {}
    status = 0
    try:
        for key in setup_keys:
            for scen in scens:
                label = f"{scen['label']} / {SETUP_LABEL[key]}"
                if key in failed_setups:
                    rows.append({"scenario": scen["label"], "setup": SETUP_LABEL[key],
                                 "setup_key": key, "failed": failed_setups[key]})
                    continue
                stem = f"{key}-{scen['id']}"
                setup = Setup(key, args, os.path.join(logdir, stem), data_root)
                try:
                    t0 = time.monotonic()
                    try:
                        setup.start()
                    except StartError as e:
                        log(f"{me}: {SETUP_LABEL[key]} did not start:\n{e}")
                        failed_setups[key] = str(e).splitlines()[0]
                        rows.append({"scenario": scen["label"], "setup": SETUP_LABEL[key],
                                     "setup_key": key, "failed": str(e)})
                        continue
                    log(f"  {label}: ready in {time.monotonic() - t0:.1f} s"
                        + (f" ({setup.info})" if setup.info else "") + ", running ...")
                    try:
                        row = run_scenario(setup, scen, args, stem)
                    except RuntimeError as e:
                        tails = "\n".join(n.failure("log") for n in setup.nodes)
                        log(f"  {label}: failed: {e}\n{tails}")
                        row = {"scenario": scen["label"], "setup": SETUP_LABEL[key],
                               "setup_key": key, "failed": str(e)}
                    rows.append(row)
                finally:
                    codes = setup.stop()
                bad_exit = {n: c for n, c in codes.items() if c not in (0, None, -15)}
                if bad_exit and "failed" not in rows[-1]:
                    rows[-1]["broker_warnings"] = rows[-1].get("broker_warnings", []) + [
                        f"{n} exited with status {c} on SIGTERM" for n, c in bad_exit.items()]
                r = rows[-1]
                if "failed" not in r:
                    log(f"    {r['count']} ok / {r['sent']} sent, {r['ops_s']:.0f} ops/s, "
                        f"p50 {f2(r['p50_ms'])} p90 {f2(r['p90_ms'])} p99 {f2(r['p99_ms'])} "
                        f"max {f2(r['max_ms'])} ms, errors {r['errors']}, client CPU "
                        f"{r['client_cpu_s']:.2f} s (busiest process "
                        f"{100 * r['client_busy_max']:.0f} %), broker CPU "
                        f"{r['broker_cpu_s']:.2f} s")
                    if r["client_busy_max"] > CPU_WARN:
                        log(f"    WARNING: a load process was busy "
                            f"{100 * r['client_busy_max']:.0f} % of the wall time: the client "
                            f"may be the bottleneck, these figures are a lower bound")
    except KeyboardInterrupt:
        log(f"\n{me}: interrupted, stopping the brokers")
        status = 130
    finally:
        cleanup()
        if not args.keep:
            shutil.rmtree(data_root, ignore_errors=True)
        else:
            log(f"{me}: data dirs kept in {data_root}")
    if not rows:
        return status or 1
    # group by scenario, setups in their fixed order
    order = {s["label"]: i for i, s in enumerate(scens)}
    sorder = {k: i for i, (k, _) in enumerate(SETUPS)}
    rows.sort(key=lambda r: (order.get(r["scenario"], 99), sorder.get(r["setup_key"], 9)))
    meta["notes"] = notes_for(rows, args)
    if status:
        meta["notes"].insert(0, "interrupted: incomplete results")
    md = os.path.join(args.out, "results.md")
    write_markdown(md, rows, meta)
    write_csv(os.path.join(args.out, "results.csv"), rows)
    with open(os.path.join(args.out, "details.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1, default=str)
    plotted = write_plot(os.path.join(args.out, "results.png"), rows)
    with open(md) as f:
        print(f.read())
    log(f"{me}: wrote {md}, results.csv, details.json"
        + (", results.png" if plotted else "") + f" and logs/ in {args.out}")
    if status:
        return status
    return 1 if any("failed" in r or r.get("errors") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
