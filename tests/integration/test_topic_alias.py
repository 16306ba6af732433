"""Topic Alias in both directions: aliases set and used by the client,
remapped, rejected when 0, above the announced maximum or unknown; aliases
used by the server only within the client's Topic Alias Maximum."""

import pytest

import rawmqtt as r
from clients import uid


def publisher(broker, raw, **kw):
    c = raw(broker, version=5)
    ack = c.connect(uid("ta"), version=5, **kw)
    return c, ack


def subscriber(broker, clients, flt="ta/#"):
    s = clients.connected(broker, version=5)
    s.subscribe([(flt, 1), ("ta-marker", 1)])
    return s


def test_client_to_server_alias(broker, raw, clients):
    sub = subscriber(broker, clients)
    c, ack = publisher(broker, raw)
    assert ack.props.get("TopicAliasMaximum", 0) >= 1
    c.publish("ta/long/topic/name", b"1", qos=1, pid=1, props={"TopicAlias": 1})
    c.publish("", b"2", qos=1, pid=2, props={"TopicAlias": 1})      # alias only
    c.publish("", b"3", qos=0, props={"TopicAlias": 1})
    c.publish("ta-marker", b"", qos=1, pid=3)
    got = sub.until_marker("ta-marker")
    assert [(m.topic, m.payload) for m in got] == [("ta/long/topic/name", b"1"),
                                                   ("ta/long/topic/name", b"2"),
                                                   ("ta/long/topic/name", b"3")]
    # The alias is not forwarded to subscribers.
    assert all("TopicAlias" not in m.props for m in got)


def test_client_alias_remapped(broker, raw, clients):
    sub = subscriber(broker, clients)
    c, _ = publisher(broker, raw)
    c.publish("ta/first", b"a", qos=1, pid=1, props={"TopicAlias": 2})
    c.publish("ta/second", b"b", qos=1, pid=2, props={"TopicAlias": 2})   # remap
    c.publish("", b"c", qos=1, pid=3, props={"TopicAlias": 2})
    c.publish("ta-marker", b"", qos=1, pid=4)
    got = sub.until_marker("ta-marker")
    assert [(m.topic, m.payload) for m in got] == [("ta/first", b"a"), ("ta/second", b"b"),
                                                   ("ta/second", b"c")]


def test_alias_limit_from_config(start_broker, raw, clients):
    b = start_broker(topic_alias_maximum=3)
    sub = subscriber(b, clients)
    c, ack = publisher(b, raw)
    assert ack.props.get("TopicAliasMaximum") == 3
    c.publish("ta/x", b"ok", qos=1, pid=1, props={"TopicAlias": 3})
    assert [m.payload for m in sub.expect_messages(1)] == [b"ok"]
    # [MQTT-3.3.2-9]: above the maximum -> DISCONNECT 0x94 Topic Alias invalid.
    c.send(r.publish("ta/x", b"bad", qos=1, pid=2, version=5, props={"TopicAlias": 4}))
    got = c.recv_until_closed()
    assert [(p.type, p.reason) for p in got] == [(r.DISCONNECT, 0x94)]


def test_alias_zero_is_invalid(broker, raw):
    # [MQTT-3.3.2-8]: Topic Alias 0 is not permitted. The spec names no
    # reason code for it: 0x94 Topic Alias invalid (Starling), or the
    # generic malformed/protocol error codes (Mosquitto sends 0x81).
    c, _ = publisher(broker, raw)
    c.send(r.publish("ta/x", b"bad", qos=1, pid=1, version=5, props={"TopicAlias": 0}))
    got = c.recv_until_closed()
    assert [p.type for p in got] == [r.DISCONNECT]
    assert got[0].reason in ((0x81, 0x82, 0x94) if broker.is_mosquitto else (0x94,))


def test_alias_when_server_allows_none(start_broker, raw):
    b = start_broker(topic_alias_maximum=0)
    c, ack = publisher(b, raw)
    assert ack.props.get("TopicAliasMaximum", 0) == 0
    c.send(r.publish("ta/x", b"bad", qos=1, pid=1, version=5, props={"TopicAlias": 1}))
    got = c.recv_until_closed()
    assert [(p.type, p.reason) for p in got] == [(r.DISCONNECT, 0x94)]


def test_unknown_alias_with_empty_topic_is_protocol_error(broker, raw):
    # v5 3.3.4: an empty topic with an alias that has no mapping is a
    # Protocol Error (0x82).
    c, _ = publisher(broker, raw)
    c.send(r.publish("", b"bad", qos=1, pid=1, version=5, props={"TopicAlias": 5}))
    got = c.recv_until_closed()
    assert [(p.type, p.reason) for p in got] == [(r.DISCONNECT, 0x82)]


def test_empty_topic_without_alias_is_protocol_error(broker, raw):
    c, _ = publisher(broker, raw)
    c.send(r.publish("", b"bad", qos=1, pid=1, version=5))
    got = c.recv_until_closed()
    assert [(p.type, p.reason) for p in got] in ([(r.DISCONNECT, 0x82)], [(r.DISCONNECT, 0x90)])


def test_aliases_do_not_survive_reconnect(broker, raw):
    # [MQTT-3.3.2-7]: alias mappings belong to the network connection.
    cid = uid("ta")
    c = raw(broker, version=5)
    c.connect(cid, version=5, props={"SessionExpiryInterval": 60})
    c.publish("ta/x", b"1", qos=1, pid=1, props={"TopicAlias": 1})
    c.disconnect()
    c = raw(broker, version=5)
    c.connect(cid, version=5, clean=False, props={"SessionExpiryInterval": 60})
    c.send(r.publish("", b"2", qos=1, pid=2, version=5, props={"TopicAlias": 1}))
    got = c.recv_until_closed()
    assert [(p.type, p.reason) for p in got] == [(r.DISCONNECT, 0x82)]


def _receive_with_aliases(s, n):
    """Reads n PUBLISH packets, resolving server-set topic aliases as a
    client must; returns (resolved topics, packets)."""
    aliases, topics, packets = {}, [], []
    for _ in range(n):
        p = s.expect(r.PUBLISH)
        if p.qos:
            s.send(r.ack(r.PUBACK, p.pid, version=5))
        alias = p.props.get("TopicAlias")
        if alias is not None:
            if p.topic:
                aliases[alias] = p.topic
            else:
                assert alias in aliases, "server used alias %d before defining it" % alias
        topic = p.topic or aliases[alias]
        topics.append(topic)
        packets.append(p)
    return topics, packets


def test_server_never_uses_alias_without_client_maximum(broker, raw, clients):
    # [MQTT-3.3.2-10]: no Topic Alias Maximum from the client -> no aliases.
    s = raw(broker, version=5)
    s.connect(uid("tas"), version=5)
    s.subscribe(1, [("tas/#", 1)])
    pub = clients.connected(broker, version=5)
    for i in range(6):
        pub.publish("tas/a/rather/long/topic/name/%d" % (i % 2), b"%d" % i, qos=1)
    topics, packets = _receive_with_aliases(s, 6)
    assert all("TopicAlias" not in p.props and p.topic for p in packets)


def test_server_aliases_within_client_maximum(broker, raw, clients):
    # [MQTT-3.3.2-11]: the server may use aliases 1..client maximum only.
    s = raw(broker, version=5)
    s.connect(uid("tas"), version=5, props={"TopicAliasMaximum": 2})
    s.subscribe(1, [("tas/#", 1)])
    pub = clients.connected(broker, version=5)
    names = ["tas/topic/number/%d/with/some/length" % (i % 4) for i in range(16)]
    for i, t in enumerate(names):
        pub.publish(t, b"%d" % i, qos=1)
    topics, packets = _receive_with_aliases(s, 16)
    assert topics == names
    used = [p.props["TopicAlias"] for p in packets if "TopicAlias" in p.props]
    assert all(1 <= a <= 2 for a in used), used
    if broker.is_mosquitto and not used:
        pytest.skip("Starling-specific: Mosquitto 2.0.11 sends no topic aliases (a MAY in v5 3.3.2.3.4)")
    # Starling uses them: repeats of a topic are sent as alias-only PUBLISHes.
    assert any(p.topic == "" for p in packets), "server never sent an alias-only PUBLISH"


def test_server_alias_with_single_slot_resolves(broker, raw, clients):
    s = raw(broker, version=5)
    s.connect(uid("tas"), version=5, props={"TopicAliasMaximum": 1})
    s.subscribe(1, [("tas1/#", 1)])
    pub = clients.connected(broker, version=5)
    names = ["tas1/a", "tas1/a", "tas1/b", "tas1/a", "tas1/b", "tas1/b"]
    for i, t in enumerate(names):
        pub.publish(t, b"%d" % i, qos=1)
    topics, packets = _receive_with_aliases(s, len(names))
    assert topics == names
    assert all(p.props.get("TopicAlias", 1) == 1 for p in packets)


def test_server_alias_per_connection(broker, raw, clients):
    # After a reconnect the server must define an alias again before using it.
    cid = uid("tas")
    s = raw(broker, version=5)
    s.connect(cid, version=5, props={"TopicAliasMaximum": 5, "SessionExpiryInterval": 60})
    s.subscribe(1, [("tasr/#", 1)])
    pub = clients.connected(broker, version=5)
    for i in range(3):
        pub.publish("tasr/t", b"%d" % i, qos=1)
    _receive_with_aliases(s, 3)
    s.disconnect()
    s = raw(broker, version=5)
    s.connect(cid, version=5, clean=False, props={"TopicAliasMaximum": 5, "SessionExpiryInterval": 60})
    pub.publish("tasr/t", b"after", qos=1)
    topics, packets = _receive_with_aliases(s, 1)     # asserts the alias is defined first
    assert topics == ["tasr/t"]
