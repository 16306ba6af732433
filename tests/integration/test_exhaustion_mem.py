"""Memory and store limits a user expects to hold (issue 11): session queues
capped in bytes per session and per node (max_queued_bytes,
max_queued_bytes_total) with the drop policy and the messages_dropped
metric; the retained quota (max_retained, max_retained_bytes, capped by the
store) answering 0x97 Quota exceeded; retained messages streamed to a new
subscription as the client acknowledges, however many match.

STARLING_LONG=1 runs the retained stream over 100,000 messages."""

import http.client
import os
import threading

import pytest

import rawmqtt as r
from clients import starling_only, uid

LONG = os.environ.get("STARLING_LONG", "") not in ("", "0")
KB64 = b"x" * 65536


def metric(b, name):
    host, port = b.admin_url[len("http://"):].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("metric %s not in /metrics" % name)


def publish_many(c, items, qos=1, retain=False, batch=200):
    """Publishes (topic, payload) pairs pipelined, batch at a time, waiting
    for every acknowledgement; returns the reason codes in order."""
    reasons = []
    for start in range(0, len(items), batch):
        part = items[start:start + batch]
        c.send(b"".join(r.publish(t, p, qos=qos, retain=retain, pid=i + 1, version=c.version)
                        for i, (t, p) in enumerate(part)))
        for i in range(len(part)):
            a = c.expect(r.PUBACK, 60)
            assert a.pid == i + 1
            reasons.append(a.reason)
    return reasons


def offline_session(raw, b, cid, topic):
    """A persistent v4 session subscribed to topic at QoS 1, now offline."""
    c = raw(b, version=4)
    c.connect(cid, clean=False)
    c.subscribe(1, [(topic, 1), ("marker/" + cid, 1)])
    c.disconnect()


def reconnect_and_count(raw, b, pub, cid):
    """Reconnects the session and returns the payloads it receives before a
    marker published after the reconnection (queued ones come first)."""
    c = raw(b, version=4)
    c.connect(cid, clean=False)
    pub.publish("marker/" + cid, b"", qos=1, pid=1)
    return [p.payload for p in c.publishes_until("marker/" + cid, timeout=30)]


def test_queue_capped_in_bytes_by_default(broker, raw):
    # Default max_queued_bytes (16 MiB): 300 messages of 64 KB for an offline
    # session, 255 of them fit; the rest are dropped and counted.
    starling_only(broker, "max_queued_bytes (Mosquitto's default is unlimited)")
    cid = uid("qb")
    topic = "qb/t"
    offline_session(raw, broker, cid, topic)
    dropped = metric(broker, "starling_messages_dropped_total")
    pub = r.mqtt_connect(broker.port, uid("pub"))
    publish_many(pub, [(topic, KB64)] * 300)
    fit = (16 << 20) // (len(topic) + len(KB64))
    got = reconnect_and_count(raw, broker, pub, cid)
    assert len(got) == fit == 255
    assert metric(broker, "starling_messages_dropped_total") - dropped == 300 - fit
    # the in-memory queue names the session; a durable one (in the store, the
    # limit applied by every node) is counted by the publisher's node
    log = broker.log()
    assert "queue of session %s full" % cid in log or "durable queue of a session full" in log
    pub.close()


def test_queue_bytes_drop_oldest_keeps_newest(start_broker, raw):
    b = start_broker(max_queued_bytes="1m", queue_policy="drop_oldest")
    starling_only(b, "max_queued_bytes")
    cid = uid("qo")
    offline_session(raw, b, cid, "qo/t")
    pub = r.mqtt_connect(b.port, uid("pub"))
    publish_many(pub, [("qo/t", b"%02d" % i + KB64[2:]) for i in range(20)])
    got = reconnect_and_count(raw, b, pub, cid)
    fit = (1 << 20) // (len("qo/t") + len(KB64))
    assert [p[:2] for p in got] == [b"%02d" % i for i in range(20 - fit, 20)]
    assert metric(b, "starling_messages_dropped_total") == 20 - fit


def test_node_wide_queue_cap(start_broker, raw):
    # Two offline sessions, no per-session limit, 1 MiB for the node: between
    # them they hold what fits in 1 MiB (each counts the shared payload it
    # holds), every other copy is dropped and counted.
    # max_queued_bytes_total bounds memory: the queues in memory of sessions
    # that are not durable (durable queues are in the store, bounded by
    # max_queued / max_queued_bytes per session and by the store's size)
    b = start_broker(max_queued=0, max_queued_bytes=0, max_queued_bytes_total="1m", durable_sessions="false")
    starling_only(b, "max_queued_bytes_total")
    ids = [uid("qn"), uid("qn")]
    for cid in ids:
        offline_session(raw, b, cid, "qn/t")
    pub = r.mqtt_connect(b.port, uid("pub"))
    publish_many(pub, [("qn/t", KB64)] * 20)
    fit = (1 << 20) // (len("qn/t") + len(KB64))
    assert metric(b, "starling_queued_bytes") == fit * (len("qn/t") + len(KB64))
    got = sum(len(reconnect_and_count(raw, b, pub, cid)) for cid in ids)
    assert got == fit
    assert metric(b, "starling_messages_dropped_total") == 2 * 20 - fit
    assert metric(b, "starling_queued_bytes") == 0


def test_retained_quota_v5_answers_quota_exceeded(start_broker, raw):
    b = start_broker(max_retained=3)
    starling_only(b, "max_retained")
    c = raw(b, version=5)
    c.connect(uid("rq"))
    for t in ("rq/a", "rq/b", "rq/c"):
        assert c.publish(t, b"1", qos=1, retain=True).reason < 0x80
    # a new topic past the quota: refused, QoS 1 and QoS 2
    assert c.publish("rq/d", b"1", qos=1, retain=True, pid=2).reason == 0x97
    assert c.publish("rq/d", b"1", qos=2, retain=True, pid=3).reason == 0x97
    # replacing and clearing never grow it; the freed slot takes a new topic
    assert c.publish("rq/a", b"2", qos=1, retain=True, pid=4).reason < 0x80
    assert c.publish("rq/b", b"", qos=1, retain=True, pid=5).reason < 0x80
    assert c.publish("rq/d", b"3", qos=1, retain=True, pid=6).reason < 0x80
    assert c.publish("rq/e", b"1", qos=1, retain=True, pid=7).reason == 0x97
    # the node keeps serving: retained state as accepted, live traffic flows
    s = raw(b, version=5)
    s.connect(uid("rqs"))
    s.subscribe(1, [("rq/#", 1), ("rqm", 1)])
    c.publish("rqm", b"", qos=1, pid=8)
    got = {(p.topic, p.payload) for p in s.publishes_until("rqm")}
    assert got == {("rq/a", b"2"), ("rq/c", b"1"), ("rq/d", b"3")}
    assert metric(b, "starling_retained_refused_total") == 3
    assert "retained quota reached" in b.log()


def test_retained_quota_v3_acknowledged_not_stored(start_broker, raw):
    # MQTT 3.1.1 has no failure code in PUBACK: the PUBLISH is acknowledged
    # and discarded, as Mosquitto does for a PUBLISH it does not deliver; the
    # connection stays open.
    b = start_broker(max_retained=1)
    starling_only(b, "max_retained")
    c = raw(b, version=4)
    c.connect(uid("rq3"))
    c.publish("rq3/a", b"1", qos=1, retain=True)
    c.publish("rq3/b", b"1", qos=1, retain=True, pid=2)
    c.publish("rq3/b", b"1", qos=2, retain=True, pid=3)
    assert c.is_open()
    s = raw(b, version=4)
    s.connect(uid("rq3s"))
    s.subscribe(1, [("rq3/#", 1), ("rq3m", 1)])
    c.publish("rq3m", b"", qos=1, pid=4)
    assert [p.topic for p in s.publishes_until("rq3m")] == ["rq3/a"]
    assert metric(b, "starling_retained_refused_total") == 2


def test_retained_bytes_quota_stops_before_the_store_fills(start_broker, raw):
    # store_max_mb=16 with the default quota: the retained bytes stop at a
    # quarter of the store (4 MiB) with 0x97, and the node keeps serving
    # (before: 64 KB retained messages filled the store and stopped it).
    b = start_broker(store_max_mb=16)
    starling_only(b, "store_max_mb")
    c = raw(b, version=5)
    c.connect(uid("rb"))
    reasons = publish_many(c, [("rb/%03d" % i, KB64) for i in range(100)], retain=True, batch=20)
    fit = (4 << 20) // (len("rb/000") + len(KB64))
    assert [rc if rc >= 0x80 else 0 for rc in reasons] == [0] * fit + [0x97] * (100 - fit)
    # replacing one of the same size is allowed, the node still serves
    assert c.publish("rb/000", KB64, qos=1, retain=True, pid=1).reason < 0x80
    s = raw(b, version=5)
    s.connect(uid("rbs"))
    s.subscribe(1, [("rb/live", 1)])
    c.publish("rb/live", b"ok", qos=1, pid=2)
    assert s.expect(r.PUBLISH).payload == b"ok"


def fill_retained(b, n, conns=10, size=0):
    """Stores n retained QoS 1 messages ret/<k>/<i> over conns connections
    (payloads of size bytes, or short ones)."""
    errors = []

    def worker(k):
        try:
            c = r.mqtt_connect(b.port, uid("fill"))
            items = [("ret/%d/%d" % (k, i), (b"v%d" % i).ljust(size, b".")) for i in range(n // conns)]
            publish_many(c, items, retain=True, batch=500)
            c.close()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_subscribe_receives_every_retained_message(start_broker, raw):
    # Retained messages stream as the client acknowledges: every one arrives
    # at QoS 1 (before: 1,064, the window plus max_queued, silently).
    n = 100000 if LONG else 20000
    version = 5
    b = start_broker()
    starling_only(b, "Mosquitto 2.0 queues retained messages too and stops at max_queued_messages")
    fill_retained(b, n)
    dropped = None if b.is_mosquitto else metric(b, "starling_messages_dropped_total")
    s = raw(b, version=version)
    s.connect(uid("rs"))
    s.send(r.subscribe(1, [("ret/#", 1)], version=version))
    seen = set()
    inflight = 0
    while len(seen) < n:
        p = s.recv(timeout=10)
        if p.type != r.PUBLISH:
            assert p.type == r.SUBACK
            continue
        assert p.retain and p.qos == 1
        seen.add(p.topic)
        # acknowledge in bursts, so the window is really full at times
        inflight += 1
        if inflight == 64 or len(seen) == n:
            inflight = 0
        s.send(r.ack_packet(r.PUBACK, p.pid, version))
    assert len(seen) == n
    if dropped is not None:
        assert metric(b, "starling_messages_dropped_total") == dropped
    # the subscription is live meanwhile and after
    s.send(r.publish("ret/live", b"now", qos=1, pid=1, version=version))
    while True:
        p = s.recv(timeout=10)
        if p.type == r.PUBLISH:
            assert (p.topic, p.payload, p.retain) == ("ret/live", b"now", False)
            break


def test_retained_stream_at_qos0_waits_for_the_socket(broker, raw):
    # QoS 0: 12 MB of retained messages to a subscriber reading as fast as
    # it can; the stream follows the socket instead of overflowing the
    # connection's write backlog (before: most were dropped there).
    n = 3000
    fill_retained(broker, n, size=4096)
    s = raw(broker, version=4)
    s.connect(uid("r0"))
    s.send(r.subscribe(1, [("ret/#", 0)]))
    seen = set()
    while len(seen) < n:
        p = s.recv(timeout=10)
        if p.type == r.PUBLISH:
            assert p.qos == 0 and len(p.payload) == 4096
            seen.add(p.topic)
    if not broker.is_mosquitto:
        assert metric(broker, "starling_messages_dropped_total") == 0


def test_unsubscribe_ends_the_retained_stream(start_broker, raw):
    # A subscriber that does not acknowledge holds the stream at its window;
    # after UNSUBSCRIBE nothing more of it comes.
    b = start_broker(max_inflight=10)
    starling_only(b, "streamed retained messages")
    fill_retained(b, 200, conns=2)
    s = raw(b, version=4)
    s.connect(uid("ru"))
    s.send(r.subscribe(1, [("ret/#", 1)]))
    got = []
    while len(got) < 10:
        p = s.recv()
        if p.type == r.PUBLISH:
            got.append(p)
    s.send(r.unsubscribe(2, ["ret/#"]))
    s.expect(r.UNSUBACK)
    for p in got:
        s.send(r.ack_packet(r.PUBACK, p.pid))
    s.send(r.subscribe(3, [("ru/m", 1)]))
    s.send(r.publish("ru/m", b"", qos=0))
    later = [p.topic for p in s.publishes_until("ru/m") if p.type == r.PUBLISH]
    assert later == []


def test_retained_list_beyond_the_queue_bytes_is_counted_and_logged(start_broker, raw):
    # The topic list of a stream counts as queued bytes: with 1 KiB per
    # session only part of 200 topics is listed; the rest is counted as
    # dropped and logged, never silently lost.
    b = start_broker(max_queued_bytes="1k")
    starling_only(b, "max_queued_bytes")
    fill_retained(b, 200, conns=2)
    s = raw(b, version=4)
    s.connect(uid("rt"))
    s.send(r.subscribe(1, [("ret/#", 1)]))
    got = set()
    dropped = None
    while dropped is None or len(got) < 200 - dropped:
        p = s.recv(timeout=10)
        if p.type == r.SUBACK:
            dropped = metric(b, "starling_messages_dropped_total")  # counted when the list is made
        elif p.type == r.PUBLISH:
            got.add(p.topic)
            s.send(r.ack_packet(r.PUBACK, p.pid))
    assert 0 < dropped < 200
    s.subscribe(2, [("rt/m", 1)])
    s.send(r.publish("rt/m", b"", qos=0))
    assert s.publishes_until("rt/m") == []
    assert "retained messages for ret/#: %d not sent" % dropped in b.log()
    assert metric(b, "starling_queued_bytes") == 0
