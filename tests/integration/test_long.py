"""Long soak runs, only with STARLING_LONG=1 (./tests/run.sh --long):
connection churn with wills and persistent sessions, and a sustained QoS 1
fan-out. Bounded in count and time; loopback only."""

import os
import threading
import time

import pytest

import rawmqtt as r
from clients import uid


def long_only():
    if os.environ.get("STARLING_LONG", "") in ("", "0"):
        pytest.skip("long run: set STARLING_LONG=1 (./tests/run.sh --long)")


def test_connection_churn(broker, clients):
    long_only()
    w = clients.connected(broker, version=5)
    w.subscribe("churn/will/#", qos=1)
    n = 1500
    for i in range(n):
        version = (3, 4, 5)[i % 3]
        c = r.RawClient(broker.port, version=version)
        cid = ("ch%d" % i)[:20]
        c.connect(cid, version=version, clean=(i % 2 == 0),
                  will={"topic": "churn/will/%d" % i, "payload": b"w", "qos": 1})
        c.subscribe(1, [("churn/t/%d" % (i % 50), 1)])
        if i % 4 == 0:
            c.close()                          # abnormal: will published
        else:
            c.disconnect()
    wills = w.expect_messages(len([i for i in range(n) if i % 4 == 0]), timeout=60)
    assert len({m.topic for m in wills}) == len(wills)


def test_sustained_fanout(start_broker, clients):
    long_only()
    # A queue large enough that slow Python subscribers never overflow it.
    broker = start_broker(max_queued=100000)
    subs = [clients.connected(broker, version=(4, 5)[i % 2]) for i in range(20)]
    for s in subs:
        s.subscribe("fan/#", qos=1)
    pubs = [clients.connected(broker, version=5) for _ in range(4)]
    per_pub = 1000
    errors = []

    def run(p, k):
        # Waiting on every 10th keeps paho below the Receive Maximum, where
        # its own send queue could reorder messages.
        try:
            for i in range(per_pub):
                p.publish("fan/%d" % k, b"%d:%d" % (k, i), qos=1, wait=(i % 10 == 9))
        except Exception as e:      # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(p, k)) for k, p in enumerate(pubs)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    total = per_pub * len(pubs)
    for s in subs:
        got = s.expect_messages(total, timeout=120)
        per = {}
        for m in got:
            k, i = m.payload.split(b":")
            per.setdefault(k, []).append(int(i))
        for k, v in per.items():
            if v != list(range(per_pub)):
                bad = [(j, x) for j, x in enumerate(v) if x != j][:5]
                raise AssertionError("%s: publisher %s: %d messages, first out of place %r" % (
                    s.client_id, k, len(v), bad))
    print("fan-out: %d msgs x %d subscribers in %.1fs" % (total, len(subs), time.monotonic() - t0))
