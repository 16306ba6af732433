"""MQTT steps the cluster tests share: persistent sessions, v5 reason codes
over raw sockets (paho 1.6 drops the PUBACK reason code), the "cluster
serves" round trip, and collecting retained messages."""

import time

import harness  # noqa: F401  (puts tests/integration on sys.path)
import rawmqtt as r
from clients import connect_props, uid

EXPIRY = 3600  # Session Expiry Interval of the tests' persistent v5 sessions


def session_props(expiry=EXPIRY):
    return connect_props(SessionExpiryInterval=expiry)


def persistent(clients, node, client_id=None, version=5, **kw):
    """A connected paho client with a persistent session: v5 clean_start false
    and a Session Expiry Interval, or 3.1.1 clean session 0. Returns
    (client, session present)."""
    if version == 5:
        c = clients(node, client_id=client_id, version=5)
        _, sp, _ = c.connect(clean_start=False, properties=session_props(), **kw)
    else:
        c = clients(node, client_id=client_id, version=version, clean=False)
        _, sp, _ = c.connect(**kw)
    return c, sp


def raw_v5(node, client_id=None, clean=True, expiry=None, timeout=5.0, expect=0):
    """A raw MQTT 5 connection; returns (RawClient, CONNACK), asserting the
    CONNACK reason when expect is not None."""
    props = {} if expiry is None else {"SessionExpiryInterval": expiry}
    c = r.RawClient(node.port, version=5, host=node.host, timeout=timeout)
    try:
        ack = c.connect(uid("raw") if client_id is None else client_id, expect_reason=expect, clean=clean,
                        props=props, timeout=timeout)
    except BaseException:
        c.close()
        raise
    return c, ack


# PUBACK reason codes that mean the publish was accepted: Success and No
# matching subscribers (MQTT 5.0, 3.4.2.1).
PUBACK_OK = (0x00, 0x10)


def granted(code):
    """SUBACK success codes are the granted QoS 0x00-0x02."""
    return code <= 2


def timed(fn, *args, **kw):
    """(fn's result, seconds it took)."""
    t = time.monotonic()
    out = fn(*args, **kw)
    return out, time.monotonic() - t


def retain(node, topic, payload, timeout=5.0):
    """Publishes one retained QoS 1 message over MQTT 5 and returns the PUBACK reason."""
    c, _ = raw_v5(node, timeout=timeout)
    try:
        return c.publish(topic, payload, qos=1, retain=True, pid=1, timeout=timeout).reason
    finally:
        c.disconnect()


def receive_topics(client, want, timeout=30.0):
    """Collects messages until every topic in want (topic -> payload) arrived;
    returns {topic: (payload, retain flag)} of everything received."""
    got = {}
    deadline = time.monotonic() + timeout
    while any(t not in got for t in want):
        left = deadline - time.monotonic()
        if left <= 0:
            missing = sorted(t for t in want if t not in got)
            raise AssertionError("%d of %d retained topics never arrived, e.g. %s" % (
                len(missing), len(want), missing[:10]))
        try:
            m = client.expect_message(timeout=left)
        except AssertionError:
            continue
        got[m.topic] = (m.payload, m.retain)
    wrong = {t: got[t] for t in want if got[t] != (want[t], True)}
    assert not wrong, "retained messages with the wrong payload or no retain flag: %s" % (
        dict(list(wrong.items())[:10]),)
    return got


def check_serving(clients, sub_node, pub_node, read_node, tag="serve"):
    """The cluster serves: a persistent subscription via sub_node, a retained
    QoS 1 publish via pub_node and a new subscriber on read_node that gets the
    retained message all succeed."""
    base = "%s/%s" % (tag, uid("s"))
    s, _ = persistent(clients, sub_node)
    assert s.subscribe(base + "/#", qos=1) == [1], "subscribe via %r refused" % sub_node
    s.disconnect()
    reason = retain(pub_node, base + "/x", b"served")
    assert reason in PUBACK_OK, "retained publish via %r: PUBACK 0x%02x" % (pub_node, reason)
    c = clients.connected(read_node)
    assert c.subscribe(base + "/#", qos=1) == [1], "subscribe via %r refused" % read_node
    receive_topics(c, {base + "/x": b"served"}, timeout=10)
    c.disconnect()
    return base
