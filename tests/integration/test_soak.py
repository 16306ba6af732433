"""Memory soak, only with STARLING_LONG=1 (./tests/run.sh --long): connect /
subscribe / publish / disconnect churn against one starlingd for
STARLING_SOAK_SECONDS (default 3600), its resident memory (VmRSS) sampled
every 10 s.

Pass condition (flat memory): the steady-state baseline is the highest sample
of the warm-up's second half (the warm-up is the first sixth of the run: 10
minutes of an hour); every sample of the run's second half must stay within
SOAK_GROWTH (10 %) plus SOAK_SLACK_KB (2 MiB, allocator noise) of it. The
churn's state is bounded on purpose (200 client ids, 100 retained topics,
offline queues capped by max_queued), so a broker without a leak levels off;
one that keeps a few hundred bytes per connection, subscription or message
climbs past the bound within the hour. The series is printed (pytest -s) and
written to soak_rss.csv in the test's directory."""

import os
import socket
import threading
import time

import pytest

import rawmqtt as r

SAMPLE_S = 10
SOAK_GROWTH = 0.10
SOAK_SLACK_KB = 2048
IDS = 200           # client ids reused in turn (persistent sessions stay bounded)
RETAINED = 100      # retained topics overwritten in turn


def long_only():
    if os.environ.get("STARLING_LONG", "") in ("", "0"):
        pytest.skip("long run: set STARLING_LONG=1 (./tests/run.sh --long)")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def until(c, ptype, pid=None, timeout=10.0):
    """Reads c until a packet of ptype (and pid) comes, acknowledging the
    PUBLISHes that come first (queued messages of a resumed session)."""
    deadline = time.monotonic() + timeout
    while True:
        p = c.recv(max(0.1, deadline - time.monotonic()))
        if p.type == ptype and (pid is None or p.pid == pid):
            return p
        if p.type == r.PUBLISH and p.qos == 1:
            c.send(r.ack(r.PUBACK, p.pid, version=c.version))
        elif p.type == r.PUBLISH and p.qos == 2:
            c.send(r.ack(r.PUBREC, p.pid, version=c.version))
        elif p.type == r.PUBREL:
            c.send(r.ack(r.PUBCOMP, p.pid, version=c.version))
        if time.monotonic() > deadline:
            raise AssertionError("no %s within %.0f s" % (r.TYPE_NAMES[ptype], timeout))


class Reader(threading.Thread):
    """A subscriber that stays connected and reads everything."""

    def __init__(self, port, n):
        super().__init__(daemon=True)
        self.c = r.RawClient(port, version=(4, 5)[n % 2])
        self.c.connect("soak-reader-%d" % n)
        self.c.subscribe(1, [("soak/#", 1)])
        self.stop = False
        self.received = 0
        self.error = None

    def run(self):
        while not self.stop:
            try:
                p = self.c.recv(1.0)
            except (r.Timeout, socket.timeout, TimeoutError):
                continue
            except Exception as e:      # reported by the test
                if not self.stop:
                    self.error = e
                return
            if p.type == r.PUBLISH:
                self.received += 1
                if p.qos == 1:
                    self.c.send(r.ack(r.PUBACK, p.pid, version=self.c.version))


def churn_once(port, i):
    version = (3, 4, 5)[i % 3]
    c = r.RawClient(port, version=version)
    try:
        cid = "soak-%d" % (i % IDS)
        props = {"SessionExpiryInterval": 120} if version == 5 and i % 2 else None
        c.send(r.connect(cid, version=version, clean=(i % 2 == 0), props=props,
                         will={"topic": "soak/will/%d" % (i % IDS), "payload": b"w", "qos": 1}))
        ack = until(c, r.CONNACK)
        assert ack.reason == 0, "CONNACK %r" % ack
        c.send(r.subscribe(1, [("soak/t/%d" % (i % 50), 1), ("soak/r/+", 0)], version=version))
        until(c, r.SUBACK, 1)
        for k in range(5):
            c.send(r.publish("soak/t/%d" % ((i + k) % 50), b"x" * (64 + 32 * k), qos=k % 2, pid=k + 2,
                             version=version))
            if k % 2:
                until(c, r.PUBACK, k + 2)
        c.send(r.publish("soak/r/%d" % (i % RETAINED), b"r%d" % i, qos=1, retain=True, pid=9,
                         version=version))
        until(c, r.PUBACK, 9)
        if i % 4 == 0:
            c.close()                   # abnormal: the will goes out
        else:
            c.disconnect()
    finally:
        c.close()


def test_soak_memory(start_broker, tmp_path):
    long_only()
    duration = float(os.environ.get("STARLING_SOAK_SECONDS", "3600"))
    broker = start_broker()
    if broker.is_mosquitto:
        pytest.skip("memory of starlingd")
    pid = broker.proc.pid
    readers = [Reader(broker.port, n) for n in range(2)]
    for t in readers:
        t.start()
    samples = []                        # (seconds since start, RSS kB)
    stop = threading.Event()

    def sample():
        t0 = time.monotonic()
        while True:
            samples.append((time.monotonic() - t0, rss_kb(pid)))
            if stop.wait(SAMPLE_S):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    i = 0
    try:
        while time.monotonic() - t0 < duration:
            churn_once(broker.port, i)
            i += 1
            for t in readers:
                assert t.error is None, "reader: %r" % t.error
            assert broker.proc.poll() is None, "starlingd exited:\n" + broker.log()[-3000:]
    finally:
        stop.set()
        sampler.join(15)
        for t in readers:
            t.stop = True
    samples.append((time.monotonic() - t0, rss_kb(pid)))

    with open(tmp_path / "soak_rss.csv", "w") as f:
        f.write("seconds,rss_kb\n")
        for s, kb in samples:
            f.write("%.0f,%d\n" % (s, kb))
    warm = duration / 6
    base_window = [kb for s, kb in samples if warm / 2 <= s <= warm]
    late = [kb for s, kb in samples if s >= duration / 2]
    assert base_window and late, "too few samples: %r" % samples
    base = max(base_window)
    limit = base * (1 + SOAK_GROWTH) + SOAK_SLACK_KB
    print("\nsoak: %d churn cycles in %.0f s (%.0f/s), readers got %s messages" % (
        i, duration, i / duration, [t.received for t in readers]))
    print("soak: RSS kB first %d, baseline %d (max of %.0f-%.0f s), last-half min %d max %d, last %d, "
          "limit %d" % (samples[0][1], base, warm / 2, warm, min(late), max(late), samples[-1][1], limit))
    print("soak: series (s:kB) " + " ".join("%.0f:%d" % (s, kb) for s, kb in samples))
    assert max(late) <= limit, "RSS grew from %d kB to %d kB (limit %d kB): see %s" % (
        base, max(late), limit, tmp_path / "soak_rss.csv")
