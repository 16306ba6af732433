"""MQTT 5 PUBLISH properties: payload format indicator, content type,
response topic, correlation data and user properties passed through
unchanged; request/response; message expiry with the remaining interval
forwarded, expired messages dropped."""

import time

import pytest

import rawmqtt as r
from clients import connect_props, pub_props, uid

FULL = dict(PayloadFormatIndicator=1, ContentType="application/json; charset=utf-8",
            ResponseTopic="resp/topic/ü", CorrelationData=b"\x00\xffcorrelation\x01",
            UserProperty=[("b", "2"), ("a", "1"), ("a", "1"), ("a", "dup"), ("", ""), ("ключ", "значение")])


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_properties_passed_through_unchanged(broker, clients, qos):
    sub = clients.connected(broker, version=5)
    sub.subscribe("props/t", qos=qos)
    pub = clients.connected(broker, version=5)
    pub.publish("props/t", b'{"x":1}', qos=qos, properties=pub_props(**FULL))
    m = sub.expect_message()
    for k, v in FULL.items():
        assert m.props.get(k) == v, "%s: sent %r, got %r" % (k, v, m.props.get(k))
    assert m.payload == b'{"x":1}'


def test_user_property_order_and_duplicates_on_wire(broker, raw, clients):
    # [MQTT-3.3.2-18]: user properties are forwarded in order, duplicates kept.
    s = raw(broker, version=5)
    s.connect(uid("up"), version=5)
    s.subscribe(1, [("up/t", 0)])
    p = raw(broker, version=5)
    p.connect(uid("upp"), version=5)
    pairs = [("k", "3"), ("k", "1"), ("z", ""), ("k", "3")]
    p.publish("up/t", b"x", qos=1, props={"UserProperty": pairs})
    got = s.expect(r.PUBLISH)
    assert got.props.get("UserProperty") == pairs


def test_properties_on_retained_message(broker, clients):
    pub = clients.connected(broker, version=5)
    pub.publish("propr/t", b"r", qos=1, retain=True, properties=pub_props(**FULL))
    sub = clients.connected(broker, version=5)
    sub.subscribe("propr/t", qos=1)
    m = sub.expect_message()
    assert m.retain
    for k, v in FULL.items():
        assert m.props.get(k) == v


def test_properties_on_queued_message(broker, clients):
    cid = uid("propq")
    c = clients(broker, client_id=cid, version=5)
    c.connect(properties=connect_props(SessionExpiryInterval=60))
    c.subscribe("propq/t", qos=1)
    c.disconnect()
    pub = clients.connected(broker, version=5)
    pub.publish("propq/t", b"q", qos=1, properties=pub_props(**FULL))
    c = clients(broker, client_id=cid, version=5)
    assert c.connect(clean_start=False, properties=connect_props(SessionExpiryInterval=60))[1]
    m = c.expect_message()
    for k, v in FULL.items():
        assert m.props.get(k) == v


def test_no_properties_means_none_added(broker, raw, clients):
    s = raw(broker, version=5)
    s.connect(uid("np"), version=5)
    s.subscribe(1, [("np/t", 1)])
    pub = clients.connected(broker, version=5)
    pub.publish("np/t", b"bare", qos=1)
    p = s.expect(r.PUBLISH)
    assert p.props == {}


def test_v311_subscriber_gets_payload_without_properties(broker, clients):
    sub = clients.connected(broker, version=4)
    sub.subscribe("mix/t", qos=1)
    pub = clients.connected(broker, version=5)
    pub.publish("mix/t", b"to-v3", qos=1, properties=pub_props(**FULL))
    m = sub.expect_message()
    assert m.payload == b"to-v3"


def test_request_response(broker, clients):
    requester = clients.connected(broker, version=5)
    requester.subscribe("rr/reply/+", qos=1)
    responder = clients.connected(broker, version=5)
    responder.subscribe("rr/request", qos=1)
    requester.publish("rr/request", b"ping", qos=1,
                      properties=pub_props(ResponseTopic="rr/reply/42", CorrelationData=b"req-42"))
    req = responder.expect_message()
    assert req.props["ResponseTopic"] == "rr/reply/42"
    responder.publish(req.props["ResponseTopic"], b"pong", qos=1,
                      properties=pub_props(CorrelationData=req.props["CorrelationData"]))
    resp = requester.expect_message()
    assert (resp.topic, resp.payload, resp.props["CorrelationData"]) == ("rr/reply/42", b"pong", b"req-42")


def test_request_response_information(broker, raw):
    # v5 3.1.2.11.7: the server MAY answer Request Response Information with
    # Response Information; when present it must be a string.
    c = raw(broker, version=5)
    ack = c.connect(uid("rri"), version=5, props={"RequestResponseInformation": 1})
    assert isinstance(ack.props.get("ResponseInformation", ""), str)
    c2 = raw(broker, version=5)
    ack2 = c2.connect(uid("rri"), version=5, props={"RequestResponseInformation": 0})
    assert "ResponseInformation" not in ack2.props      # [MQTT-3.1.2-28]


def test_message_expiry_forwarded_live(broker, clients):
    sub = clients.connected(broker, version=5)
    sub.subscribe("mx/t", qos=1)
    pub = clients.connected(broker, version=5)
    pub.publish("mx/t", b"x", qos=1, properties=pub_props(MessageExpiryInterval=100))
    m = sub.expect_message()
    assert 99 <= m.props["MessageExpiryInterval"] <= 100


def test_message_expiry_remaining_interval_for_queued(broker, clients, raw):
    # [MQTT-3.3.2-6]: the forwarded Message Expiry Interval is the received
    # value minus the time the message waited in the server.
    cid = uid("mxq")
    c = clients(broker, client_id=cid, version=5)
    c.connect(properties=connect_props(SessionExpiryInterval=60))
    c.subscribe("mxq/t", qos=1)
    c.disconnect()
    pub = clients.connected(broker, version=5)
    pub.publish("mxq/t", b"aging", qos=1, properties=pub_props(MessageExpiryInterval=10))
    time.sleep(2.1)     # the behaviour under test is time
    s = raw(broker, version=5)
    assert s.connect(cid, version=5, clean=False, props={"SessionExpiryInterval": 60}).session_present
    p = s.expect(r.PUBLISH)
    assert p.payload == b"aging"
    assert 6 <= p.props["MessageExpiryInterval"] <= 8, p.props


def test_expired_queued_message_not_delivered(broker, clients):
    # [MQTT-3.3.2-5]: once expired, the server must not deliver it.
    cid = uid("mxe")
    c = clients(broker, client_id=cid, version=5)
    c.connect(properties=connect_props(SessionExpiryInterval=60))
    c.subscribe("mxe/#", qos=1)
    c.disconnect()
    pub = clients.connected(broker, version=5)
    pub.publish("mxe/t", b"short", qos=1, properties=pub_props(MessageExpiryInterval=1))
    pub.publish("mxe/t", b"long", qos=1, properties=pub_props(MessageExpiryInterval=60))
    pub.publish("mxe/t", b"forever", qos=1)
    time.sleep(2.1)     # the behaviour under test is time
    c = clients(broker, client_id=cid, version=5)
    c.connect(clean_start=False, properties=connect_props(SessionExpiryInterval=60))
    pub.publish("mxe/marker", b"", qos=1)
    got = c.until_marker("mxe/marker")
    assert [m.payload for m in got] == [b"long", b"forever"]
    assert "MessageExpiryInterval" not in got[1].props


def test_retained_message_expires(broker, clients):
    pub = clients.connected(broker, version=5)
    pub.publish("mxr/gone", b"x", qos=1, retain=True, properties=pub_props(MessageExpiryInterval=1))
    pub.publish("mxr/kept", b"y", qos=1, retain=True, properties=pub_props(MessageExpiryInterval=60))
    time.sleep(2.1)     # the behaviour under test is time
    sub = clients.connected(broker, version=5)
    sub.subscribe([("mxr/#", 1), ("mxr-marker", 1)])
    pub.publish("mxr-marker", b"", qos=1)
    got = sub.until_marker("mxr-marker")
    assert [m.topic for m in got] == ["mxr/kept"]
    assert 57 <= got[0].props["MessageExpiryInterval"] <= 59


def test_payload_format_indicator_to_v311_and_back(broker, clients):
    # A v3.1.1 publisher's message reaches a v5 subscriber without invented
    # properties.
    sub = clients.connected(broker, version=5)
    sub.subscribe("pfi/t", qos=1)
    pub = clients.connected(broker, version=4)
    pub.publish("pfi/t", b"v3", qos=1)
    m = sub.expect_message()
    assert "PayloadFormatIndicator" not in m.props and "ContentType" not in m.props


def test_user_properties_on_connect_and_subscribe_accepted(broker, raw):
    c = raw(broker, version=5)
    c.connect(uid("upc"), version=5, props={"UserProperty": [("app", "test")]})
    ack = c.subscribe(1, [("upc/t", 1)], props={"UserProperty": [("x", "y")]})
    assert ack.codes == [1]
    ack = c.unsubscribe(2, ["upc/t"], props={"UserProperty": [("x", "y")]})
    assert ack.codes == [0]
