"""Retained messages: set, replace, clear with an empty payload, the RETAIN
flag on delivery, Retain Handling 0/1/2, Retain As Published, QoS of
retained deliveries, retain_available."""

import pytest

import rawmqtt as r
from clients import opts, uid


def retained_until_marker(c, broker_clients, broker, marker):
    """Messages a fresh subscription received before a marker published
    after its SUBACK (retained messages are sent with the subscription)."""
    pub = broker_clients.connected(broker, version=5)
    pub.publish(marker, b"marker", qos=1)
    return c.until_marker(marker)


@pytest.mark.parametrize("version", [3, 4, 5])
def test_retained_message_delivered_to_new_subscriber(broker, clients, version):
    pub = clients.connected(broker, version=version)
    pub.publish("ret/a", b"kept", qos=1, retain=True)
    sub = clients.connected(broker, version=version)
    sub.subscribe("ret/a", qos=1)
    m = sub.expect_message()
    # [MQTT-3.3.1-8]: RETAIN 1 on messages sent because of a new subscription.
    assert (m.topic, m.payload, m.retain, m.qos) == ("ret/a", b"kept", True, 1)


def test_retained_message_replaced(broker, clients):
    pub = clients.connected(broker, version=4)
    pub.publish("ret/r", b"first", qos=1, retain=True)
    pub.publish("ret/r", b"second", qos=1, retain=True)
    sub = clients.connected(broker, version=4)
    sub.subscribe([("ret/r", 1), ("ret/marker", 1)])
    got = retained_until_marker(sub, clients, broker, "ret/marker")
    assert [m.payload for m in got] == [b"second"]


@pytest.mark.parametrize("qos", [0, 1])
def test_retained_message_cleared_by_empty_payload(broker, clients, qos):
    # [MQTT-3.3.1-10/11]: a zero-byte retained PUBLISH removes the retained
    # message and is not itself stored.
    pub = clients.connected(broker, version=4)
    pub.publish("clr/gone", b"x", qos=1, retain=True)
    pub.publish("clr/kept", b"y", qos=1, retain=True)
    pub.publish("clr/gone", b"", qos=qos, retain=True)
    sub = clients.connected(broker, version=4)
    sub.subscribe([("clr/#", 1), ("marker/clr", 1)])
    got = retained_until_marker(sub, clients, broker, "marker/clr")
    assert [(m.topic, m.payload) for m in got] == [("clr/kept", b"y")]


def test_empty_retained_forwarded_to_existing_subscribers(broker, clients):
    sub = clients.connected(broker, version=5)
    sub.subscribe("clr2/t", qos=1)
    pub = clients.connected(broker, version=5)
    pub.publish("clr2/t", b"", qos=1, retain=True)
    m = sub.expect_message()
    assert m.payload == b"" and m.retain is False


@pytest.mark.parametrize("version", [4, 5])
def test_live_delivery_clears_retain_flag(broker, clients, version):
    # [MQTT-3.3.1-9] (3.1.1) and RAP=0 in v5 [MQTT-3.3.1-12]: RETAIN 0 on
    # messages forwarded to an existing subscription.
    sub = clients.connected(broker, version=version)
    sub.subscribe("live/t", qos=1)
    pub = clients.connected(broker, version=version)
    pub.publish("live/t", b"v", qos=1, retain=True)
    m = sub.expect_message()
    assert m.retain is False


def test_retain_as_published(broker, clients):
    # [MQTT-3.3.1-13]: RAP=1 keeps the publisher's RETAIN flag.
    rap = clients.connected(broker, version=5)
    rap.subscribe("rap/t", options=opts(qos=1, retain_as_published=True))
    plain = clients.connected(broker, version=5)
    plain.subscribe("rap/t", options=opts(qos=1))
    pub = clients.connected(broker, version=5)
    pub.publish("rap/t", b"r", qos=1, retain=True)
    pub.publish("rap/t", b"n", qos=1, retain=False)
    assert [(m.payload, m.retain) for m in rap.expect_messages(2)] == [(b"r", True), (b"n", False)]
    assert [(m.payload, m.retain) for m in plain.expect_messages(2)] == [(b"r", False), (b"n", False)]


def test_retain_handling_0_sends_on_every_subscribe(broker, clients):
    pub = clients.connected(broker, version=5)
    pub.publish("rh0/t", b"r", qos=1, retain=True)
    sub = clients.connected(broker, version=5)
    sub.subscribe("rh0/t", options=opts(qos=1, retain_handling=0))
    assert sub.expect_message().payload == b"r"
    sub.subscribe("rh0/t", options=opts(qos=1, retain_handling=0))   # [MQTT-3.3.1-9] v5
    m = sub.expect_message()
    assert m.payload == b"r" and m.retain


def test_retain_handling_1_only_for_new_subscription(broker, clients):
    pub = clients.connected(broker, version=5)
    pub.publish("rh1/t", b"r", qos=1, retain=True)
    sub = clients.connected(broker, version=5)
    sub.subscribe([("rh1/t", opts(qos=1, retain_handling=1)), ("rh1/marker", opts(qos=1))])
    got = retained_until_marker(sub, clients, broker, "rh1/marker")
    assert [m.payload for m in got] == [b"r"]
    # [MQTT-3.3.1-10] v5: the subscription exists now, so nothing is sent.
    sub.subscribe("rh1/t", options=opts(qos=1, retain_handling=1))
    assert retained_until_marker(sub, clients, broker, "rh1/marker") == []


def test_retain_handling_2_never(broker, clients):
    pub = clients.connected(broker, version=5)
    pub.publish("rh2/t", b"r", qos=1, retain=True)
    sub = clients.connected(broker, version=5)
    sub.subscribe([("rh2/t", opts(qos=1, retain_handling=2)), ("rh2/marker", opts(qos=1))])
    assert retained_until_marker(sub, clients, broker, "rh2/marker") == []     # [MQTT-3.3.1-11]
    # Live messages still flow.
    pub.publish("rh2/t", b"live", qos=1)
    assert sub.expect_message().payload == b"live"


@pytest.mark.parametrize("pub_qos,sub_qos", [(1, 2), (2, 0), (0, 1), (2, 1)])
def test_retained_delivered_at_minimum_qos(broker, clients, pub_qos, sub_qos):
    pub = clients.connected(broker, version=4)
    pub.publish("rq/t", b"q", qos=pub_qos, retain=True)
    sub = clients.connected(broker, version=4)
    sub.subscribe("rq/t", qos=sub_qos)
    m = sub.expect_message()
    assert m.retain and m.qos == min(pub_qos, sub_qos)


def test_wildcard_subscription_gets_every_matching_retained(broker, clients):
    pub = clients.connected(broker, version=5)
    topics = ["wr/a", "wr/b/c", "wr/b/d", "other/x"]
    for t in topics:
        pub.publish(t, t.encode(), qos=1, retain=True)
    sub = clients.connected(broker, version=5)
    sub.subscribe([("wr/#", 1), ("wr-marker", 1)])
    got = retained_until_marker(sub, clients, broker, "wr-marker")
    assert sorted(m.topic for m in got) == ["wr/a", "wr/b/c", "wr/b/d"]
    assert all(m.retain for m in got)
    sub2 = clients.connected(broker, version=5)
    sub2.subscribe([("wr/+/d", 1), ("wr-marker", 1)])
    assert [m.topic for m in retained_until_marker(sub2, clients, broker, "wr-marker")] == ["wr/b/d"]


def test_retained_survives_publisher_disconnect(broker, clients):
    pub = clients.connected(broker, version=4)
    pub.publish("rs/t", b"stays", qos=2, retain=True)
    pub.disconnect()
    sub = clients.connected(broker, version=4)
    sub.subscribe("rs/t", qos=2)
    assert sub.expect_message().payload == b"stays"


def test_retained_raw_flags(broker, raw, clients):
    pub = clients.connected(broker, version=4)
    pub.publish("rraw/t", b"bits", qos=1, retain=True)
    c = raw(broker, version=4)
    c.connect(uid("rraw"))
    c.subscribe(1, [("rraw/t", 1)])
    p = c.expect(r.PUBLISH)
    assert p.retain and p.qos == 1 and not p.dup and p.payload == b"bits"


def test_retain_not_available(start_broker, raw):
    b = start_broker(retain_available=False)
    c = raw(b, version=5)
    ack = c.connect(uid("nora"), version=5)
    assert ack.props.get("RetainAvailable") == 0
    c.send(r.publish("nr/t", b"x", qos=1, retain=True, pid=1, version=5))
    # [MQTT-3.3.1-16] v5: RETAIN 1 when unsupported -> DISCONNECT 0x9A.
    got = c.recv_until_closed()
    assert [(p.type, p.reason) for p in got] == [(r.DISCONNECT, 0x9A)]
