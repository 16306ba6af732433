"""Configured limits and the reason codes that enforce them: max_connections,
max_topic_levels (PUBLISH and SUBSCRIBE), max_subscriptions. Maximum packet
size, receive maximum, inflight and queue limits are in test_flow_control,
test_qos and test_session."""

import pytest

import rawmqtt as r
from clients import starling_only, uid


@pytest.mark.parametrize("version,code", [(5, 0x89), (4, 0x03), (3, 0x03)])
def test_max_connections(start_broker, raw, version, code):
    b = start_broker(max_connections=2)
    starling_only(b, "CONNACK 0x89 / 0x03 over max_connections (Mosquitto closes the socket)")
    a = raw(b, version=4)
    a.connect(uid("mc")[:20])
    c = raw(b, version=4)
    c.connect(uid("mc")[:20])
    over = raw(b, version=version)
    ack = over.connect(uid("mc")[:20], version=version, expect_reason=None)
    assert ack.reason == code
    over.recv_until_closed()
    # A slot frees when a client leaves (the broker closing the socket shows
    # it has processed the DISCONNECT).
    a.send(r.disconnect())
    a.recv_until_closed()
    again = raw(b, version=version)
    again.connect(uid("mc")[:20], version=version)


def test_max_connections_refuses_excess(start_broker, raw):
    # Runs on both brokers: connections beyond the limit are refused, by
    # CONNACK >= 0x80 (Starling) or by closing the socket (Mosquitto, which
    # also miscounts by one after a client disconnects, hence "within 3").
    b = start_broker(max_connections=1)
    outcomes = []
    for _ in range(3):
        c = raw(b, version=5)
        try:
            c.send(r.connect(uid("mc"), version=5))
            p = c.recv(timeout=5)
        except r.Closed:
            outcomes.append("closed")
            continue
        assert p.type == r.CONNACK
        if p.reason == 0:
            outcomes.append("accepted")
        else:
            assert p.reason >= 0x80
            c.recv_until_closed()
            outcomes.append("refused")
    assert outcomes[0] == "accepted" and outcomes[-1] != "accepted", outcomes
    if not b.is_mosquitto:
        assert outcomes == ["accepted", "refused", "refused"]


@pytest.mark.parametrize("qos,ack_type", [(1, r.PUBACK), (2, r.PUBREC)])
def test_publish_over_max_topic_levels_v5(start_broker, raw, clients, qos, ack_type):
    b = start_broker(max_topic_levels=4)
    sub = clients.connected(b, version=5)
    sub.subscribe([("#", 1)])
    c = raw(b, version=5)
    c.connect(uid("tl"), version=5)
    c.send(r.publish("a/b/c/d/e", b"deep", qos=qos, pid=11, version=5))
    p = c.expect(ack_type)
    assert (p.pid, p.reason) == (11, 0x90)
    c.publish("a/b/c/d", b"ok", qos=1, pid=12)       # exactly the limit
    assert [m.payload for m in sub.until_marker("a/b/c/d")] == []
    assert c.is_open()


def test_publish_qos0_over_max_topic_levels_dropped(start_broker, raw, clients):
    b = start_broker(max_topic_levels=3)
    sub = clients.connected(b, version=5)
    sub.subscribe([("#", 0)])
    c = raw(b, version=5)
    c.connect(uid("tl"), version=5)
    c.send(r.publish("a/b/c/d", b"deep", qos=0, version=5))
    c.send(r.publish("a/b/c", b"marker", qos=0, version=5))
    assert sub.until_marker("a/b/c") == []
    assert c.is_open()


def test_publish_over_max_topic_levels_v311_closes(start_broker, raw):
    b = start_broker(max_topic_levels=3)
    c = raw(b, version=4)
    c.connect(uid("tl"))
    c.send(r.publish("a/b/c/d", b"deep", qos=1, pid=1))
    assert c.recv_until_closed() == []


@pytest.mark.parametrize("version,code", [(5, 0x8F), (4, 0x80)])
def test_subscribe_over_max_topic_levels(start_broker, raw, version, code):
    b = start_broker(max_topic_levels=3)
    c = raw(b, version=version)
    c.connect(uid("tl"), version=version)
    ack = c.subscribe(1, [("a/b/c", 1), ("a/b/c/d", 1), ("a/+/#", 1)])
    assert ack.codes == [1, code, 1]


@pytest.mark.parametrize("version,code", [(5, 0x97), (4, 0x80)])
def test_max_subscriptions(start_broker, raw, version, code):
    b = start_broker(max_subscriptions=2)
    c = raw(b, version=version)
    c.connect(uid("ms"), version=version)
    assert c.subscribe(1, [("ms/1", 1), ("ms/2", 1)]).codes == [1, 1]
    assert c.subscribe(2, [("ms/3", 1)]).codes == [code]
    # Replacing an existing subscription does not count as a new one.
    assert c.subscribe(3, [("ms/1", 2)]).codes == [2]
    # Unsubscribing frees a slot.
    c.unsubscribe(4, ["ms/2"])
    assert c.subscribe(5, [("ms/3", 0)]).codes == [0]


def test_max_subscriptions_per_client_not_global(start_broker, raw):
    b = start_broker(max_subscriptions=1)
    for i in range(3):
        c = raw(b, version=5)
        c.connect(uid("ms%d" % i), version=5)
        assert c.subscribe(1, [("msg/%d" % i, 1)]).codes == [1]


def test_unlimited_subscriptions_by_default(broker, raw):
    c = raw(broker, version=5)
    c.connect(uid("ms"), version=5)
    for batch in range(5):
        ack = c.subscribe(batch + 1, [("many/%d/%d" % (batch, i), 0) for i in range(100)])
        assert ack.codes == [0] * 100


def test_default_max_topic_levels(broker, raw, clients):
    starling_only(broker, "default max_topic_levels of 128")
    c = raw(broker, version=5)
    c.connect(uid("tl"), version=5)
    ok = "/".join(["l"] * 128)
    deep = "/".join(["l"] * 129)
    assert c.publish(ok, b"x", qos=1, pid=1).reason < 0x80
    c.send(r.publish(deep, b"x", qos=1, pid=2, version=5))
    assert c.expect(r.PUBACK).reason == 0x90
