"""Sessions: clean start / clean session, session present, session expiry
(in CONNECT and changed on DISCONNECT), takeover by a second connection
(v5 reason 0x8E), offline queues with their limit and policy, queued
QoS 1/2 messages delivered in order on reconnect."""

import time

import pytest

import rawmqtt as r
from clients import connect_props, uid


def assert_taken_over(broker, got):
    """[MQTT-3.1.4-3]: the Server sends the existing v5 client DISCONNECT
    0x8E (Session taken over) and closes its connection."""
    if broker.is_mosquitto and got == []:
        pytest.skip("Mosquitto 2.0.11 non-conformant: closes a taken-over v5 connection without "
                    "DISCONNECT 0x8E ([MQTT-3.1.4-3])")
    assert [(p.type, p.reason) for p in got] == [(r.DISCONNECT, 0x8E)]


def test_v311_clean_session_has_no_session_present(broker, clients):
    cid = uid("clean")
    c = clients(broker, client_id=cid, version=4, clean=True)
    assert c.connect()[1] is False
    c.subscribe("cs/t", qos=1)
    c.disconnect()
    c = clients(broker, client_id=cid, version=4, clean=True)
    assert c.connect()[1] is False      # [MQTT-3.2.2-1]


def test_v311_persistent_session_keeps_subscriptions(broker, clients):
    cid = uid("persist")
    c = clients(broker, client_id=cid, version=4, clean=False)
    assert c.connect()[1] is False
    c.subscribe("ps/t", qos=1)
    c.disconnect()
    c = clients(broker, client_id=cid, version=4, clean=False)
    assert c.connect()[1] is True       # [MQTT-3.2.2-2]
    pub = clients.connected(broker, version=4)
    pub.publish("ps/t", b"no resubscribe needed", qos=1)
    assert c.expect_message().payload == b"no resubscribe needed"


def test_v311_clean_session_discards_old_session(broker, clients):
    cid = uid("discard")
    c = clients(broker, client_id=cid, version=4, clean=False)
    c.connect()
    c.subscribe("dis/t", qos=1)
    c.disconnect()
    c = clients(broker, client_id=cid, version=4, clean=True)
    assert c.connect()[1] is False      # [MQTT-3.1.2-6]
    c.subscribe("dis/marker", qos=1)
    pub = clients.connected(broker, version=4)
    pub.publish("dis/t", b"old subscription", qos=1)
    pub.publish("dis/marker", b"", qos=1)
    assert c.until_marker("dis/marker") == []
    c.disconnect()
    c = clients(broker, client_id=cid, version=4, clean=False)
    assert c.connect()[1] is False      # the clean session was not kept


@pytest.mark.parametrize("version", [4, 5])
def test_offline_queue_delivered_in_order(broker, clients, raw, version):
    # [MQTT-4.6.0-?]: queued QoS 1 and 2 messages arrive in publish order, on
    # the wire (paho would reorder QoS 2 behind QoS 1 at PUBREL).
    cid = uid("queue")
    persist = {"props": {"SessionExpiryInterval": 60}} if version == 5 else {}
    c = raw(broker, version=version)
    c.connect(cid, version=version, clean=(version == 5), **persist)
    c.subscribe(1, [("oq/#", 2)])
    c.disconnect()
    pub = clients.connected(broker, version=version)
    for i in range(10):
        pub.publish("oq/%d" % (i % 3), b"%02d" % i, qos=1 + (i % 2))
    c = raw(broker, version=version)
    assert c.connect(cid, version=version, clean=False, **persist).session_present
    pub.publish("oq/marker", b"", qos=1)
    got = c.publishes_until("oq/marker")
    assert [p.payload for p in got] == [b"%02d" % i for i in range(10)]
    assert [p.qos for p in got] == [1 + (i % 2) for i in range(10)]
    assert all(not p.dup for p in got)


def test_offline_queue_limit_drop_new(start_broker, clients):
    # max_queued=3 with the default policy: the newest messages are dropped.
    # (max_inflight=1 makes Mosquitto, whose limit is max_queued_messages
    # beyond its inflight slots, hold the same three.)
    b = start_broker(max_queued=3, max_inflight=1)
    cid = uid("lim")
    c = clients(b, client_id=cid, version=4, clean=False)
    c.connect()
    c.subscribe("lim/t", qos=1)
    c.disconnect()
    pub = clients.connected(b, version=4)
    for i in range(8):
        pub.publish("lim/t", b"%d" % i, qos=1)
    c = clients(b, client_id=cid, version=4, clean=False)
    c.connect()
    c.subscribe("lim/marker", qos=1)
    pub.publish("lim/marker", b"", qos=1)
    got = [m.payload for m in c.until_marker("lim/marker")]
    assert got == [b"0", b"1", b"2"]


def test_offline_queue_limit_drop_oldest(start_broker, clients):
    b = start_broker(max_queued=3, queue_policy="drop_oldest")
    cid = uid("lim")
    c = clients(b, client_id=cid, version=5)
    c.connect(properties=connect_props(SessionExpiryInterval=60))
    c.subscribe("lo/t", qos=1)
    c.disconnect()
    pub = clients.connected(b, version=5)
    for i in range(8):
        pub.publish("lo/t", b"%d" % i, qos=1)
    c = clients(b, client_id=cid, version=5)
    c.connect(clean_start=False, properties=connect_props(SessionExpiryInterval=60))
    c.subscribe("lo/marker", qos=1)
    pub.publish("lo/marker", b"", qos=1)
    assert [m.payload for m in c.until_marker("lo/marker")] == [b"5", b"6", b"7"]


def test_v5_session_expiry_zero_ends_session_on_disconnect(broker, raw):
    cid = uid("exp0")
    c = raw(broker, version=5)
    c.connect(cid, version=5, clean=False)
    c.subscribe(1, [("e0/t", 1)])
    c.disconnect()
    c = raw(broker, version=5)
    assert not c.connect(cid, version=5, clean=False).session_present


def test_v5_session_resumes_within_expiry(broker, raw):
    cid = uid("exp")
    c = raw(broker, version=5)
    c.connect(cid, version=5, clean=True, props={"SessionExpiryInterval": 2})
    c.subscribe(1, [("ex/t", 1)])
    c.disconnect()
    c = raw(broker, version=5)
    assert c.connect(cid, version=5, clean=False, props={"SessionExpiryInterval": 2}).session_present


def test_v5_session_expires(broker, raw):
    cid = uid("exp")
    c = raw(broker, version=5)
    c.connect(cid, version=5, clean=True, props={"SessionExpiryInterval": 1})
    c.subscribe(1, [("ex/t", 1)])
    c.disconnect()
    time.sleep(2.2)     # the behaviour under test is time
    c = raw(broker, version=5)
    assert not c.connect(cid, version=5, clean=False).session_present


def test_v5_clean_start_discards_session(broker, raw):
    cid = uid("cst")
    c = raw(broker, version=5)
    c.connect(cid, version=5, clean=True, props={"SessionExpiryInterval": 60})
    c.subscribe(1, [("cst/t", 1)])
    c.disconnect()
    c = raw(broker, version=5)
    assert not c.connect(cid, version=5, clean=True, props={"SessionExpiryInterval": 60}).session_present


def test_v5_session_expiry_changed_on_disconnect(broker, raw):
    # v5 3.14.2.2.2: DISCONNECT may set a new Session Expiry Interval.
    cid = uid("dexp")
    c = raw(broker, version=5)
    c.connect(cid, version=5, props={"SessionExpiryInterval": 60})
    c.subscribe(1, [("dx/t", 1)])
    c.disconnect(0, props={"SessionExpiryInterval": 0})
    c = raw(broker, version=5)
    assert not c.connect(cid, version=5, clean=False).session_present


def test_v5_session_expiry_nonzero_on_disconnect_after_zero_is_protocol_error(broker, raw):
    # [MQTT-3.14.2-2]: CONNECT said 0, DISCONNECT says non-zero -> Protocol Error.
    cid = uid("dexp")
    c = raw(broker, version=5)
    c.connect(cid, version=5)
    c.send(r.disconnect(0, props={"SessionExpiryInterval": 30}, version=5))
    got = c.recv_until_closed()
    assert [(p.type, p.reason) for p in got] in ([(r.DISCONNECT, 0x82)], [])
    c = raw(broker, version=5)
    assert not c.connect(cid, version=5, clean=False).session_present


def test_max_session_expiry_lowers_client_value(start_broker, raw):
    b = start_broker(max_session_expiry=1)
    c = raw(b, version=5)
    ack = c.connect(uid("mse"), version=5, props={"SessionExpiryInterval": 3600})
    assert ack.props.get("SessionExpiryInterval") == 1


@pytest.mark.parametrize("old_version,new_version", [(5, 5), (4, 4), (5, 4), (4, 5)])
def test_takeover(broker, raw, old_version, new_version):
    # [MQTT-3.1.4-3]: a second connection with the same client id closes
    # the first; v5 sends DISCONNECT 0x8E Session taken over first.
    cid = uid("take")
    old = raw(broker, version=old_version)
    old.connect(cid, version=old_version)
    new = raw(broker, version=new_version)
    new.connect(cid, version=new_version)
    got = old.recv_until_closed()
    if old_version == 5:
        assert new.is_open()
        assert_taken_over(broker, got)
    else:
        assert got == []
    assert new.is_open()


def test_takeover_keeps_session_and_inflight(broker, raw, clients):
    cid = uid("take")
    old = raw(broker, version=5)
    old.connect(cid, version=5, props={"SessionExpiryInterval": 60})
    old.subscribe(1, [("tk/t", 1)])
    pub = clients.connected(broker, version=5)
    pub.publish("tk/t", b"unacked", qos=1)
    first = old.expect(r.PUBLISH)
    new = raw(broker, version=5)
    ack = new.connect(cid, version=5, clean=False, props={"SessionExpiryInterval": 60})
    assert ack.session_present
    again = new.expect(r.PUBLISH)
    assert (again.pid, again.dup, again.payload) == (first.pid, True, b"unacked")
    new.send(r.ack(r.PUBACK, again.pid, version=5))
    pub.publish("tk/t", b"after", qos=1)
    assert new.expect(r.PUBLISH).payload == b"after"


def test_takeover_with_clean_start_gives_new_session(broker, raw):
    cid = uid("take")
    old = raw(broker, version=5)
    old.connect(cid, version=5, props={"SessionExpiryInterval": 60})
    old.subscribe(1, [("tkc/t", 1)])
    new = raw(broker, version=5)
    assert not new.connect(cid, version=5, clean=True).session_present
    old.recv_until_closed()


def test_takeover_storm_leaves_one_owner(broker, raw):
    cid = uid("storm")
    conns = []
    for _ in range(10):
        c = raw(broker, version=5)
        c.connect(cid, version=5)
        conns.append(c)
    closed = [c.recv_until_closed() for c in conns[:-1]]
    assert conns[-1].is_open()
    for got in closed:
        assert_taken_over(broker, got)


def test_queued_messages_expire_with_session(broker, clients):
    # Session expiry discards the queue along with the session.
    cid = uid("qexp")
    c = clients(broker, client_id=cid, version=5)
    c.connect(properties=connect_props(SessionExpiryInterval=1))
    c.subscribe("qx/t", qos=1)
    c.disconnect()
    pub = clients.connected(broker, version=5)
    pub.publish("qx/t", b"lost", qos=1)
    time.sleep(2.2)     # the behaviour under test is time
    c = clients(broker, client_id=cid, version=5)
    assert c.connect(clean_start=False)[1] is False
    c.subscribe("qx/t", qos=1)
    pub.publish("qx/t", b"fresh", qos=1)
    assert c.expect_message().payload == b"fresh"


def test_v5_session_expiry_zero_ends_session_on_abnormal_close(broker, raw):
    # v5 3.1.2.11.2: with Session Expiry Interval 0 (absent) the session
    # ends when the network connection closes, however it closes.
    cid = uid("sp")
    c = raw(broker, version=5)
    c.connect(cid, version=5, clean=False)
    c.close()
    c = raw(broker, version=5)
    assert not c.connect(cid, version=5, clean=False).session_present
