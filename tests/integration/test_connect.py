"""CONNECT / CONNACK for MQTT 3.1, 3.1.1 and 5.0: protocol levels, client
identifiers, keep alive and Server Keep Alive, the v5 CONNACK properties."""

import threading
import time

import pytest

import rawmqtt as r
from clients import starling_only, uid


def broker_is_starling(b):
    return not b.is_mosquitto


def assert_keepalive_window(broker, elapsed, keepalive):
    """[MQTT-3.1.2-24]: the server closes the connection once 1.5 x Keep Alive
    passes without a packet (1 s of slack for scheduling)."""
    assert elapsed >= keepalive, "closed after %.2fs, before the keep alive %ds" % (elapsed, keepalive)
    if broker.is_mosquitto and elapsed > 1.5 * keepalive + 1.0:
        # Mosquitto 2.0.11 checks keep alives only every 5 s or so.
        pytest.skip("Mosquitto 2.0.11 non-conformant: closed after %.1fs, [MQTT-3.1.2-24] "
                    "requires 1.5 x Keep Alive (%.1fs)" % (elapsed, 1.5 * keepalive))
    assert elapsed <= 1.5 * keepalive + 1.0, "closed after %.2fs with keep alive %d" % (elapsed, keepalive)


def test_v31_mqisdp_connect_and_pubsub(broker, raw):
    c = raw(broker, version=3)
    ack = c.connect("v31-client", version=3)
    assert ack.reason == 0 and not ack.session_present
    assert len(ack.body) == 2
    sub = c.subscribe(1, [("v31/t", 1)])
    assert sub.codes == [1]
    c.send(r.publish("v31/t", b"hello 3.1", qos=1, pid=2))
    # PUBACK and our own message (no No Local in 3.1), in either order.
    got = {p.type: p for p in (c.recv(), c.recv())}
    assert got[r.PUBACK].pid == 2
    p = got[r.PUBLISH]
    assert (p.topic, p.payload, p.qos) == ("v31/t", b"hello 3.1", 1)
    c.send(r.ack(r.PUBACK, p.pid))
    assert c.is_open()


def test_v31_zero_length_client_id_rejected(broker, raw):
    # MQTT 3.1: the Client Identifier is 1 to 23 characters; otherwise
    # CONNACK return code 2, identifier rejected.
    c = raw(broker, version=3)
    ack = c.connect("", version=3, expect_reason=None)
    assert ack.reason == 0x02
    c.recv_until_closed()


def test_v311_connect(clients, broker):
    c = clients(broker, version=4)
    rc, sp, _ = c.connect()
    assert rc == 0 and sp is False


def test_v5_connect_connack_properties(start_broker, clients):
    b = start_broker(receive_maximum=10, topic_alias_maximum=5, max_packet_size=5000)
    c = clients(b, version=5)
    rc, sp, props = c.connect()
    assert rc == 0 and sp is False
    assert props.get("ReceiveMaximum") == 10
    assert props.get("TopicAliasMaximum") == 5
    assert props.get("MaximumPacketSize") == 5000
    # Absent means "available" for these; present must say available.
    assert props.get("RetainAvailable", 1) == 1
    assert props.get("WildcardSubscriptionAvailable", 1) == 1
    assert props.get("SharedSubscriptionAvailable", 1) == 1
    assert props.get("SubscriptionIdentifierAvailable", 1) == 1
    assert props.get("MaximumQoS", 2) == 2


def test_v5_default_connack_announces_limits(broker, raw):
    starling_only(broker, "Starling's default receive_maximum (1024) and topic_alias_maximum (64)")
    c = raw(broker, version=5)
    ack = c.connect("defaults", version=5)
    assert ack.props.get("ReceiveMaximum") == 1024
    assert ack.props.get("TopicAliasMaximum") == 64
    assert ack.props.get("MaximumPacketSize") == 1048576


@pytest.mark.parametrize("level", [2, 6, 7, 255])
def test_unsupported_protocol_level(broker, raw, level):
    # [MQTT-3.1.2-2] (3.1.1): CONNACK 0x01 then close; v5 allows 0x84 or a
    # plain close for a level it does not support.
    c = raw(broker, version=4)
    c.send(r.connect("badlevel", version=level, protocol_name="MQTT"))
    got = c.recv_until_closed()
    assert all(p.type == r.CONNACK for p in got)
    if got:
        assert got[0].reason in (0x01, 0x84)


def test_wrong_protocol_name_closes(broker, raw):
    # [MQTT-3.1.2-1]: a wrong protocol name may get CONNACK 0x84 (v5) but the
    # connection must be closed and nothing accepted.
    c = raw(broker, version=4)
    c.send(r.connect("badname", version=4, protocol_name="MQTX"))
    got = c.recv_until_closed()
    assert all(p.type == r.CONNACK and p.reason != 0 for p in got)


def test_v311_zero_length_client_id_clean(clients, broker, raw):
    # [MQTT-3.1.3-6]: a zero-byte ClientId with CleanSession=1 gets a unique id.
    c = raw(broker, version=4)
    c.connect("", clean=True)
    sub = c.subscribe(1, [("zl/t", 0)])
    assert sub.codes == [0]
    c2 = raw(broker, version=4)
    c2.connect("", clean=True)       # a second anonymous client coexists
    assert c.is_open() and c2.is_open()


def test_v311_zero_length_client_id_persistent_rejected(broker, raw):
    # [MQTT-3.1.3-8]: zero-byte ClientId with CleanSession=0 -> CONNACK 0x02, close.
    c = raw(broker, version=4)
    ack = c.connect("", clean=False, expect_reason=None)
    assert ack.reason == 0x02
    c.recv_until_closed()


def test_v5_assigned_client_identifier(broker, raw):
    c = raw(broker, version=5)
    ack = c.connect("", version=5)
    assigned = ack.props.get("AssignedClientIdentifier")
    assert assigned, "no Assigned Client Identifier for an empty client id (%r)" % ack
    c2 = raw(broker, version=5)
    ack2 = c2.connect("", version=5)
    assert ack2.props.get("AssignedClientIdentifier") not in (None, assigned)
    # The assigned id names a real session: a takeover with it closes c.
    c3 = raw(broker, version=5)
    c3.connect(assigned, version=5)
    got = c.recv_until_closed()
    assert [p.reason for p in got if p.type == r.DISCONNECT] in ([0x8E], [])


def test_v5_assigned_id_session_resumes(broker, raw):
    c = raw(broker, version=5)
    ack = c.connect("", version=5, clean=True, props={"SessionExpiryInterval": 30})
    cid = ack.props["AssignedClientIdentifier"]
    c.subscribe(1, [("assigned/t", 1)])
    c.disconnect()
    c2 = raw(broker, version=5)
    ack2 = c2.connect(cid, version=5, clean=False)
    assert ack2.session_present


@pytest.mark.parametrize("version", [4, 5])
def test_zero_length_client_id_disallowed(start_broker, raw, version):
    b = start_broker(allow_zero_length_clientid=False)
    c = raw(b, version=version)
    ack = c.connect("", version=version, expect_reason=None)
    if version == 4:
        assert ack.reason == 0x02       # [MQTT-3.1.3-9]
    elif broker_is_starling(b):
        assert ack.reason == 0x85       # Client Identifier not valid
    else:
        assert ack.reason >= 0x80       # [MQTT-3.1.3-8] 0x85 is a MAY; Mosquitto sends 0x80
    c.recv_until_closed()
    ok = raw(b, version=version)
    ok.connect("named", version=version)


@pytest.mark.parametrize("version", [4, 5])
def test_keepalive_timeout_closes(broker, raw, version):
    # [MQTT-3.1.2-24]: no control packet within 1.5 x Keep Alive -> close.
    c = raw(broker, version=version)
    c.connect(uid("ka"), version=version, keepalive=1)
    t0 = time.monotonic()
    got = c.recv_until_closed(timeout=8)
    elapsed = time.monotonic() - t0
    for p in got:
        assert p.type == r.DISCONNECT and p.reason == 0x8D
    assert_keepalive_window(broker, elapsed, 1)


def test_keepalive_kept_by_pings(broker, raw):
    c = raw(broker, version=4)
    c.connect(uid("ka"), keepalive=1)
    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:
        c.send(r.pingreq())
        assert c.expect(r.PINGRESP, timeout=2).type == r.PINGRESP
        time.sleep(0.4)   # the behaviour under test is the passage of time
    assert c.is_open()


def test_keepalive_many_connections_each_on_its_time(broker, raw):
    # Starling checks keep alives in one timer wheel shared by every
    # connection (conn.c): forty connections due in the same slot and forty
    # due a second later are each closed within their own window, and a
    # neighbour that pings (re-armed at each check) stays open, then is
    # closed in the window after its last ping.
    groups = {1: [], 2: []}
    for ka in (1, 2):
        for i in range(40):
            c = raw(broker, version=4)
            c.connect(uid("kaw%d-%d" % (ka, i)), keepalive=ka)
            groups[ka].append((c, time.monotonic()))
    pinger = raw(broker, version=4)
    pinger.connect(uid("kaw-ping"), keepalive=1)
    elapsed = {1: [], 2: []}
    lock = threading.Lock()

    def wait_closed(ka, c, t0):
        try:
            c.recv_until_closed(timeout=10)
            e = time.monotonic() - t0
        except r.Timeout:
            e = None
        with lock:
            elapsed[ka].append(e)

    threads = [threading.Thread(target=wait_closed, args=(ka, c, t0))
               for ka, members in groups.items() for c, t0 in members]
    for t in threads:
        t.start()
    t_end = time.monotonic() + 15
    while time.monotonic() < t_end and any(t.is_alive() for t in threads):
        pinger.send(r.pingreq())
        assert pinger.expect(r.PINGRESP, timeout=2).type == r.PINGRESP
        time.sleep(0.4)   # the behaviour under test is the passage of time
    for t in threads:
        t.join(timeout=1)
    assert pinger.is_open()
    t_last = time.monotonic()
    pinger.recv_until_closed(timeout=8)
    assert_keepalive_window(broker, time.monotonic() - t_last, 1)
    for ka in (1, 2):
        assert len(elapsed[ka]) == 40 and None not in elapsed[ka], "left open: %r" % elapsed[ka]
        for e in sorted(elapsed[ka], reverse=True):
            assert_keepalive_window(broker, e, ka)


def test_keepalive_zero_means_no_timeout(broker, raw):
    c = raw(broker, version=4)
    c.connect(uid("ka0"), keepalive=0)
    with pytest.raises(r.Timeout):
        c.recv(timeout=2)
    assert c.is_open()


def test_server_keep_alive_announced(start_broker, raw):
    b = start_broker(max_keepalive=10)
    c = raw(b, version=5)
    ack = c.connect(uid("ska"), version=5, keepalive=60)
    assert ack.props.get("ServerKeepAlive") == 10


def test_server_keep_alive_enforced(start_broker, raw):
    # [MQTT-3.2.2-21]: the client must use the Server Keep Alive, and the
    # server enforces the value it announced.
    b = start_broker(max_keepalive=1)
    c = raw(b, version=5)
    ack = c.connect(uid("ska"), version=5, keepalive=60)
    assert ack.props.get("ServerKeepAlive") == 1
    t0 = time.monotonic()
    c.recv_until_closed(timeout=8)
    assert_keepalive_window(b, time.monotonic() - t0, 1)


def test_server_keep_alive_absent_when_within_limit(start_broker, raw):
    b = start_broker(max_keepalive=100)
    c = raw(b, version=5)
    ack = c.connect(uid("ska"), version=5, keepalive=30)
    assert ack.props.get("ServerKeepAlive", 30) == 30


def test_connack_is_first_packet(broker, raw):
    # [MQTT-3.2.0-1]: the first packet from the server is CONNACK.
    c = raw(broker, version=5)
    c.send(r.connect(uid("first"), version=5) + r.subscribe(1, [("first/t", 0)], version=5))
    assert c.recv().type == r.CONNACK
    assert c.recv().type == r.SUBACK


@pytest.mark.own_auth  # a broker without users
def test_username_password_accepted_anonymously(broker, raw):
    c = raw(broker, version=4)
    c.connect(uid("up"), username="user", password=b"secret")
    c5 = raw(broker, version=5)
    # v5 allows a password without a user name.
    c5.connect(uid("up5"), version=5, password=b"secret")


def test_pipelined_packets_after_connect(broker, raw):
    # Several packets in one TCP segment are all processed.
    c = raw(broker, version=4)
    burst = (r.connect(uid("pipe")) + r.subscribe(1, [("pipe/t", 1)]) +
             r.publish("pipe/t", b"x", qos=1, pid=2) + r.pingreq())
    c.send(burst)
    seen = [c.recv().type for _ in range(5)]
    assert seen[0] == r.CONNACK and seen[1] == r.SUBACK
    assert sorted(seen[2:]) == sorted([r.PUBACK, r.PUBLISH, r.PINGRESP])


@pytest.mark.own_auth  # credentials a broker without users ignores
def test_will_flag_and_credentials_all_versions(broker, raw):
    for version in (3, 4, 5):
        c = raw(broker, version=version)
        c.connect(uid("w")[:20], version=version, will={"topic": "w/t", "payload": b"bye", "qos": 1},
                  username="u", password=b"p")
        c.disconnect()


# --- refusals a client can act on: a CONNACK with the reason, then the close ---
# v5 4.13.1 and 3.2.2.2: for an error in CONNECT the server sends a CONNACK
# with the reason code before closing; v3.1.1 gets the return codes that
# exist, and a plain close otherwise.

def _refused(raw, broker, pkt, version=5):
    c = raw(broker, version=version)
    c.send(pkt)
    try:
        got = c.recv_until_closed()
    except r.Timeout:
        if broker.is_mosquitto:
            pytest.skip("Mosquitto 2.0.11 accepts it (v5 3.1.3.2.3: checking the will payload is a MAY)")
        raise
    if broker.is_mosquitto and got == []:
        pytest.skip("Mosquitto 2.0.11 closes without a CONNACK: allowed (4.13.1 MAY), Starling sends it")
    assert [p.type for p in got] == [r.CONNACK], "expected one CONNACK then the close, got %r" % got
    return got[0]


def _repeated_property_connect(cid):
    # Session Expiry Interval twice: a Protocol Error (v5 2.2.2.2)
    body = r.mqtt_str("MQTT") + bytes([5, 0x02]) + r.u16(60)
    body += r.properties(raw=b"\x11" + r.u32(5) + b"\x11" + r.u32(6))
    body += r.mqtt_str(cid)
    return r.packet(r.CONNECT, 0, body)


V5_REFUSALS = {
    # name: (CONNECT bytes, reason)
    "receive_maximum_0": (lambda cid: r.connect(cid, version=5, props={"ReceiveMaximum": 0}), 0x82),
    "maximum_packet_size_0": (lambda cid: r.connect(cid, version=5, props={"MaximumPacketSize": 0}), 0x82),
    "property_repeated": (_repeated_property_connect, 0x82),
    "property_not_for_connect": (lambda cid: r.connect(cid, version=5, props={"TopicAlias": 1}), 0x82),
    "will_topic_wildcard": (lambda cid: r.connect(cid, version=5, will={"topic": "w/+/x", "payload": b"x"}),
                            0x90),
    "will_payload_not_utf8": (lambda cid: r.connect(cid, version=5, will={
        "topic": "w/t", "payload": b"\xff\xfe", "props": {"PayloadFormatIndicator": 1}}), 0x99),
    "reserved_flag": (lambda cid: r.connect(cid, version=5, reserved=True), 0x81),
    "client_id_not_utf8": (lambda cid: r.connect(b"\xc0\xafbad", version=5), 0x81),
}


@pytest.mark.parametrize("case", sorted(V5_REFUSALS))
def test_v5_connect_refused_with_connack_reason(broker, raw, case):
    make, reason = V5_REFUSALS[case]
    ack = _refused(raw, broker, make(uid("ref")))
    assert ack.reason == reason, "CONNACK 0x%02x, expected 0x%02x" % (ack.reason, reason)
    assert not ack.session_present


def test_v5_connect_too_large_gets_connack_0x95(start_broker, raw):
    b = start_broker(max_packet_size=2000)
    ack = _refused(raw, b, r.connect(uid("big"), version=5, will={"topic": "w", "payload": b"x" * 4000}))
    assert ack.reason == 0x95


def test_v5_empty_client_id_refused_with_0x85(start_broker, raw):
    # [MQTT-3.1.3-8] v5 form: a server that assigns no identifier answers 0x85
    b = start_broker(allow_zero_length_clientid=False)
    ack = _refused(raw, b, r.connect("", version=5))
    if b.is_mosquitto and ack.reason == 0x80:
        pytest.skip("Mosquitto 2.0.11 answers 0x80: allowed ([MQTT-3.1.3-8] MAY 0x85)")
    assert ack.reason == 0x85


@pytest.mark.parametrize("case", ["will_topic_wildcard", "reserved_flag", "will_qos_3"])
def test_v311_connect_error_without_return_code_closes(broker, raw, case):
    # 3.1.1 has no return code for these: the connection is closed, and a
    # CONNACK, if any, never accepts it.
    cid = uid("v3ref")
    pkt = {
        "will_topic_wildcard": r.connect(cid, version=4, will={"topic": "w/#", "payload": b"x"}),
        "reserved_flag": r.connect(cid, version=4, reserved=True),
        "will_qos_3": r.connect(cid, version=4, flags=0x02 | 0x04 | 0x18),
    }[case]
    c = raw(broker, version=4)
    c.send(pkt)
    got = c.recv_until_closed()
    assert got == [], "3.1.1 has no return code for this error, got %r" % got


def test_v5_connack_announces_optional_features(broker, raw):
    # v5 3.2.2.3.11-13: Wildcard, Subscription Identifiers and Shared
    # Subscriptions Available; all three are supported, and said explicitly.
    starling_only(broker, "Mosquitto 2.0.11 leaves these properties out (absent means available)")
    c = raw(broker, version=5)
    ack = c.connect(uid("feat"), version=5)
    assert ack.props.get("WildcardSubscriptionAvailable") == 1
    assert ack.props.get("SubscriptionIdentifierAvailable") == 1
    assert ack.props.get("SharedSubscriptionAvailable") == 1


@pytest.mark.parametrize("version", [4, 5])
def test_will_qos_above_maximum_refused(start_broker, raw, version):
    # [MQTT-3.2.2-12] v5: a will QoS above Maximum QoS gets CONNACK 0x9B;
    # 3.1.1 has no return code for it, and 0x03 (server unavailable) would
    # only make the client retry: the connection is closed instead.
    b = start_broker(max_qos=1)
    c = raw(b, version=version)
    c.send(r.connect(uid("wq"), version=version, will={"topic": "w/q", "payload": b"x", "qos": 2}))
    got = c.recv_until_closed()
    if version == 5:
        if b.is_mosquitto and got == []:
            pytest.skip("Mosquitto 2.0.11 closes without the CONNACK")
        assert [(p.type, p.reason) for p in got] == [(r.CONNACK, 0x9B)], got
    else:
        if b.is_mosquitto and [(p.type, p.reason) for p in got] == [(r.CONNACK, 0x00)]:
            pytest.skip("Mosquitto 2.0.11 accepts a v3 will above its maximum QoS")
        assert got == [], "3.1.1 has no return code for it, got %r" % got
