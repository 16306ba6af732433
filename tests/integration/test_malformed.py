"""Malformed and protocol-violating input: v5 gets DISCONNECT with the right
reason code (0x81 Malformed Packet, 0x82 Protocol Error, ...), v3 gets the
connection closed; the broker never crashes and keeps serving others (the
fixture fails the test if the process died or a sanitizer complained)."""

import random

import pytest

import rawmqtt as r
from clients import uid


def assert_closed_with(c, version, reasons, broker=None):
    """v5: exactly one DISCONNECT whose reason is in `reasons`, then close
    (4.13.1: the server SHOULD send the DISCONNECT; Starling always does).
    v3: closed without any packet."""
    try:
        got = c.recv_until_closed(timeout=3)
    except r.Timeout:
        if broker is not None and broker.is_mosquitto:
            pytest.skip("Mosquitto 2.0.11 non-conformant: keeps the connection open after a "
                        "malformed packet ([MQTT-2.1.3-1] / [MQTT-2.2.2-2], 4.13)")
        raise AssertionError("connection still open: %r" % getattr(c, "pending", None))
    if version == 5 and got == [] and broker is not None and broker.is_mosquitto:
        pytest.skip("Mosquitto closes without the DISCONNECT reason code 4.13.1 says it SHOULD send")
    if version == 5:
        assert [p.type for p in got] == [r.DISCONNECT], got
        assert got[0].reason in reasons, "DISCONNECT 0x%02x, expected one of %s" % (
            got[0].reason, ["0x%02x" % x for x in reasons])
    else:
        assert got == [], got


def assert_alive(broker):
    c = r.RawClient(broker.port, version=4)
    try:
        c.connect(uid("alive"))
        assert c.is_open()
    finally:
        c.close()


def connected(raw, broker, version):
    c = raw(broker, version=version)
    c.connect(uid("mal"), version=version)
    return c


MALFORMED = 0x81
PROTOCOL = 0x82


def test_first_packet_not_connect(broker, raw):
    # [MQTT-3.1.0-1]: the first packet must be CONNECT; else close.
    c = raw(broker, version=4)
    c.send(r.subscribe(1, [("x", 0)]))
    assert all(p.type == r.DISCONNECT for p in c.recv_until_closed())
    assert_alive(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_second_connect(broker, raw, version):
    # [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error.
    c = connected(raw, broker, version)
    c.send(r.connect(uid("again"), version=version))
    assert_closed_with(c, version, (PROTOCOL,), broker)
    assert_alive(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_connect_reserved_flag(broker, raw, version):
    # [MQTT-3.1.2-3]: the reserved CONNECT flag must be 0 (Malformed Packet).
    c = raw(broker, version=version)
    c.send(r.connect(uid("rsv"), version=version, reserved=True))
    got = c.recv_until_closed()
    assert all(p.type == r.CONNACK and p.reason >= 0x80 for p in got)
    assert_alive(broker)


@pytest.mark.parametrize("case", ["will-qos3", "will-retain-without-will", "will-qos-without-will"])
@pytest.mark.parametrize("version", [4, 5])
def test_connect_bad_will_flags(broker, raw, version, case):
    # [MQTT-3.1.2-11/13/14/15]: will QoS and retain need the will flag;
    # will QoS 3 is invalid.
    cid = uid("wf")
    if case == "will-qos3":
        pkt = r.connect(cid, version=version, will={"topic": "w", "payload": b"x", "qos": 3})
    elif case == "will-retain-without-will":
        pkt = r.connect(cid, version=version, flags=0x02 | 0x20)
    else:
        pkt = r.connect(cid, version=version, flags=0x02 | 0x08)
    c = raw(broker, version=version)
    c.send(pkt)
    got = c.recv_until_closed()
    assert all(p.type == r.CONNACK and p.reason >= 0x80 for p in got)
    assert_alive(broker)


def test_v311_password_without_username(broker, raw):
    # [MQTT-3.1.2-22]: 3.1.1 forbids a password without a user name.
    c = raw(broker, version=4)
    c.send(r.connect(uid("pw"), version=4, password=b"secret"))
    got = c.recv_until_closed()
    assert all(p.type == r.CONNACK and p.reason != 0 for p in got)


def test_connect_truncated_client_id(broker, raw):
    c = raw(broker, version=4)
    good = r.connect("abcdef", version=4)
    body = good[2:-3]                    # drop the last 3 bytes of the client id
    c.send(r.packet(r.CONNECT, 0, body))
    assert c.recv_until_closed() == []
    assert_alive(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_reserved_packet_type_zero(broker, raw, version):
    c = connected(raw, broker, version)
    c.send(b"\x00\x00")
    assert_closed_with(c, version, (MALFORMED, PROTOCOL), broker)
    assert_alive(broker)


@pytest.mark.parametrize("ptype,flags", [(r.SUBSCRIBE, 0x00), (r.UNSUBSCRIBE, 0x00), (r.PUBREL, 0x00),
                                         (r.PINGREQ, 0x01), (r.DISCONNECT, 0x02), (r.PUBACK, 0x02)],
                         ids=["SUBSCRIBE-0", "UNSUBSCRIBE-0", "PUBREL-0", "PINGREQ-1", "DISCONNECT-2", "PUBACK-2"])
@pytest.mark.parametrize("version", [4, 5])
def test_invalid_fixed_header_flags(broker, raw, version, ptype, flags):
    # [MQTT-2.1.3-1] / [MQTT-2.2.2-2]: reserved flag bits must be exactly as
    # specified; otherwise Malformed Packet.
    c = connected(raw, broker, version)
    if ptype in (r.SUBSCRIBE, r.UNSUBSCRIBE):
        body = r.u16(1) + (b"\x00" if version == 5 else b"") + r.mqtt_str("a") + (b"\x00" if ptype == r.SUBSCRIBE else b"")
    elif ptype in (r.PUBREL, r.PUBACK):
        body = r.u16(1)
    else:
        body = b""
    c.send(r.packet(ptype, flags, body))
    assert_closed_with(c, version, (MALFORMED, PROTOCOL), broker)
    assert_alive(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_publish_qos3(broker, raw, version):
    # [MQTT-3.3.1-4]: QoS 3 is a Malformed Packet.
    c = connected(raw, broker, version)
    c.send(r.packet(r.PUBLISH, 0x06, r.mqtt_str("t") + r.u16(1) + (b"\x00" if version == 5 else b"") + b"x"))
    assert_closed_with(c, version, (MALFORMED,), broker)
    assert_alive(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_publish_qos1_packet_id_zero(broker, raw, version):
    # [MQTT-2.2.1-3] / [MQTT-2.3.1-1]: QoS > 0 needs a non-zero packet id.
    c = connected(raw, broker, version)
    c.send(r.publish("t", b"x", qos=1, pid=0, version=version))
    assert_closed_with(c, version, (MALFORMED, PROTOCOL), broker)
    assert_alive(broker)


@pytest.mark.parametrize("topic", ["a/+/b", "a/#", "+"])
@pytest.mark.parametrize("version", [4, 5])
def test_publish_topic_with_wildcards(broker, raw, version, topic):
    # [MQTT-3.3.2-2]: no wildcards in a PUBLISH Topic Name (v5: 0x90 Topic
    # Name invalid, as PUBACK reason or DISCONNECT).
    c = connected(raw, broker, version)
    c.send(r.publish(topic, b"x", qos=1, pid=1, version=version))
    got = c.recv_until_closed() if version == 4 else None
    if version == 4:
        assert got == []
        return
    try:
        p = c.recv()
    except r.Closed:
        pytest.fail("closed without DISCONNECT")
    if p.type == r.PUBACK:
        assert p.reason == 0x90
    else:
        assert p.type == r.DISCONNECT and p.reason in (MALFORMED, PROTOCOL, 0x90)
    assert_alive(broker)


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"a\x00b", b"\xed\xa0\x80", b"\xc0\x80"])
@pytest.mark.parametrize("version", [4, 5])
def test_publish_topic_invalid_utf8(broker, raw, version, bad):
    # [MQTT-1.5.4-1/2]: ill-formed UTF-8 (including surrogates, overlong
    # forms) and U+0000 make a Malformed Packet.
    c = connected(raw, broker, version)
    c.send(r.publish(bad, b"x", qos=0, version=version))
    assert_closed_with(c, version, (MALFORMED, PROTOCOL, 0x90), broker)
    assert_alive(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_subscribe_invalid_utf8_filter(broker, raw, version):
    c = connected(raw, broker, version)
    c.send(r.subscribe(1, [(b"a/\xff", 0)], version=version))
    got = c.recv_until_closed()
    if version == 5:
        assert [(p.type, p.reason) for p in got] in ([(r.DISCONNECT, MALFORMED)], [(r.DISCONNECT, PROTOCOL)])
    else:
        assert got == []


@pytest.mark.parametrize("version", [4, 5])
def test_subscribe_without_topics(broker, raw, version):
    # [MQTT-3.8.3-3]: at least one topic filter (a Protocol Error in v5).
    c = connected(raw, broker, version)
    c.send(r.packet(r.SUBSCRIBE, 0x02, r.u16(1) + (b"\x00" if version == 5 else b"")))
    assert_closed_with(c, version, (MALFORMED, PROTOCOL), broker)


@pytest.mark.parametrize("version", [4, 5])
def test_unsubscribe_without_topics(broker, raw, version):
    # [MQTT-3.10.3-2]
    c = connected(raw, broker, version)
    c.send(r.packet(r.UNSUBSCRIBE, 0x02, r.u16(1) + (b"\x00" if version == 5 else b"")))
    assert_closed_with(c, version, (MALFORMED, PROTOCOL), broker)


@pytest.mark.parametrize("version", [4, 5])
def test_subscribe_qos3(broker, raw, version):
    # [MQTT-3-8.3-4] (3.1.1) / [MQTT-3.8.3-5] (v5): QoS 3 is malformed.
    c = connected(raw, broker, version)
    c.send(r.subscribe(1, [("a", 3)], version=version))
    assert_closed_with(c, version, (MALFORMED, PROTOCOL), broker)


@pytest.mark.parametrize("opts", [0x40, 0x80, 0x30])    # reserved bits, Retain Handling 3
def test_subscribe_bad_options_v5(broker, raw, opts):
    # [MQTT-3.8.3-5]: reserved bits must be 0; Retain Handling 3 is a
    # Protocol Error.
    c = connected(raw, broker, 5)
    c.send(r.subscribe(1, [("a", opts | 1)], version=5))
    assert_closed_with(c, 5, (MALFORMED, PROTOCOL), broker)


def test_subscribe_v311_reserved_option_bits(broker, raw):
    # [MQTT-3-8.3-4]: the upper 6 bits of the requested QoS byte are reserved.
    c = connected(raw, broker, 4)
    c.send(r.subscribe(1, [("a", 0x04 | 1)], version=4))
    assert_closed_with(c, 4, (), broker)


def test_subscription_identifier_zero(broker, raw):
    # v5 3.8.2.1.2: Subscription Identifier 0 is a Protocol Error.
    c = connected(raw, broker, 5)
    c.send(r.subscribe(1, [("a", 1)], version=5, props={"SubscriptionIdentifier": 0}))
    assert_closed_with(c, 5, (MALFORMED, PROTOCOL), broker)


def test_remaining_length_too_long(broker, raw):
    # A fifth length byte makes a Malformed Packet (v5 1.5.5).
    c = connected(raw, broker, 5)
    c.send(b"\x30\xff\xff\xff\xff\x7f")
    got = c.recv_until_closed()
    assert [(p.type, p.reason) for p in got] in ([(r.DISCONNECT, MALFORMED)], [])
    assert_alive(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_topic_length_beyond_packet(broker, raw, version):
    c = connected(raw, broker, version)
    c.send(r.packet(r.PUBLISH, 0x00, r.u16(50) + b"short"))
    assert_closed_with(c, version, (MALFORMED,), broker)
    assert_alive(broker)


def test_property_length_beyond_packet(broker, raw):
    c = connected(raw, broker, 5)
    c.send(r.packet(r.PUBLISH, 0x00, r.mqtt_str("t") + r.varint(40) + b"\x01\x01"))
    assert_closed_with(c, 5, (MALFORMED,), broker)


def test_duplicate_property(broker, raw):
    # v5 2.2.2.2: including a property twice is a Protocol Error.
    c = connected(raw, broker, 5)
    dup = b"\x01\x00\x01\x01"      # PayloadFormatIndicator twice
    c.send(r.publish("t", b"x", qos=0, version=5, prop_raw=dup))
    assert_closed_with(c, 5, (MALFORMED, PROTOCOL), broker)


def test_unknown_property(broker, raw):
    c = connected(raw, broker, 5)
    c.send(r.publish("t", b"x", qos=0, version=5, prop_raw=b"\x7f\x00"))
    assert_closed_with(c, 5, (MALFORMED, PROTOCOL), broker)


def test_property_not_allowed_in_publish(broker, raw):
    # SessionExpiryInterval is a CONNECT/CONNACK/DISCONNECT property.
    c = connected(raw, broker, 5)
    c.send(r.publish("t", b"x", qos=0, version=5, props={"SessionExpiryInterval": 5}))
    assert_closed_with(c, 5, (MALFORMED, PROTOCOL), broker)


def test_payload_format_indicator_invalid_value(broker, raw):
    c = connected(raw, broker, 5)
    c.send(r.publish("t", b"x", qos=0, version=5, prop_raw=b"\x01\x07"))
    assert_closed_with(c, 5, (MALFORMED, PROTOCOL), broker)


def test_connect_receive_maximum_zero(broker, raw):
    # [MQTT-3.1.2-?] v5 3.1.2.11.3: Receive Maximum 0 is a Protocol Error.
    c = raw(broker, version=5)
    c.send(r.connect(uid("rm0"), version=5, props={"ReceiveMaximum": 0}))
    got = c.recv_until_closed()
    assert all(p.type in (r.CONNACK, r.DISCONNECT) and p.reason in (MALFORMED, PROTOCOL) for p in got)


def test_connect_maximum_packet_size_zero(broker, raw):
    # v5 3.1.2.11.4: Maximum Packet Size 0 is a Protocol Error.
    c = raw(broker, version=5)
    c.send(r.connect(uid("mps0"), version=5, props={"MaximumPacketSize": 0}))
    got = c.recv_until_closed()
    assert all(p.type in (r.CONNACK, r.DISCONNECT) and p.reason in (MALFORMED, PROTOCOL) for p in got)


def test_pubrel_then_garbage_keeps_other_clients(broker, raw, clients):
    sub = clients.connected(broker, version=5)
    sub.subscribe("still/here", qos=1)
    bad = connected(raw, broker, 5)
    bad.send(b"\xf0\x05garbage")
    bad.recv_until_closed()
    pub = clients.connected(broker, version=5)
    pub.publish("still/here", b"yes", qos=1)
    assert sub.expect_message().payload == b"yes"


def test_client_disconnect_with_malformed_reason(broker, raw):
    # A DISCONNECT with a property block that lies about its length.
    c = connected(raw, broker, 5)
    c.send(r.packet(r.DISCONNECT, 0, b"\x00\x05\x11"))
    got = c.recv_until_closed()
    assert all(p.type == r.DISCONNECT for p in got)
    assert_alive(broker)


def test_random_garbage_never_crashes(broker):
    # Deterministic noise after a valid CONNECT and as a first packet: the
    # broker must close or ignore, never die (checked again at teardown).
    rng = random.Random(20240611)
    for i in range(120):
        c = r.RawClient(broker.port, version=5)
        try:
            if i % 2:
                c.send(r.connect(uid("fz"), version=5))
                c.expect(r.CONNACK)
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            if i % 3 == 0:
                junk = bytes([rng.choice([0x30, 0x32, 0x82, 0xA2, 0x62, 0xE0])]) + junk
            c.try_send(junk)
            try:
                c.recv_until_closed(timeout=0.05)
            except r.Timeout:
                pass
        except (r.Closed, OSError):
            pass
        finally:
            c.close()
    assert_alive(broker)


def test_half_sent_packet_then_close(broker):
    for cut in (1, 2, 5, 10):
        c = r.RawClient(broker.port, version=4)
        c.send(r.connect(uid("half"))[:cut])
        c.close()
    c = r.RawClient(broker.port, version=4)
    c.connect(uid("half"))
    c.send(r.publish("x/y", b"z" * 100, qos=1, pid=1)[:20])
    c.close()
    assert_alive(broker)
