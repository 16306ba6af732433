"""Where a node's wall clock matters (docs/jepsen.md, "Clock jumps"): three
starlingd processes, one of them under libfaketime with its clock 2 h off,
real MQTT 5 clients over sockets.

- A retained message with a Message Expiry Interval of 1 h carries, in the
  replicated log, the wall-clock time it expires at as the node that took it
  computed it (retain.c: wall + interval). A node 2 h behind writes a time
  already past for the others, which drop it when they apply it: the publish
  was acknowledged, the node that took it serves it, the others serve the
  previous value. A node 2 h ahead drops, when it applies them, the messages
  the others took.
- An offline session's end is replicated the same way (session_release:
  expire_at_ms). When its node dies, the leader takes the session on and
  counts its expiry from that wall-clock time: a node 2 h behind hands over
  sessions with 1 h of expiry that end at once.

Each fault case is an expected failure (strict: fixing it makes the test
pass and then fail as XPASS, so the mark must go); each has a control case
with every clock right, which must pass. Behind STARLING_LONG (or
STARLING_TEST_CLOCK=1): about 40 s.
"""

import os
import time

import pytest

import backend
import harness
import rawmqtt as r
from workloads import _dial

pytestmark = [
    pytest.mark.skipif(not (harness.LONG or os.environ.get("STARLING_TEST_CLOCK", "") not in ("", "0")),
                       reason="clock jumps: STARLING_LONG=1 or STARLING_TEST_CLOCK=1 (about 40 s)"),
    pytest.mark.skipif(backend.faketime_lib() is None, reason="libfaketime (apt-get install faketime)"),
    pytest.mark.skipif(harness.KIND != "starling", reason="starlingd only"),
]

JUMP = 7200
EXPIRY = 3600
KNOWN = "wall-clock expiry times replicated as absolute times: a node whose clock is off moves them"


@pytest.fixture
def cluster(tmp_path):
    b = backend.ProcessBackend(tmp_path, "clock-%d" % os.getpid(), clock=True)
    b.start()
    yield b
    problems = b.stop()
    assert not problems, problems


def publish_retained(b, node, topic, value):
    c, ack = _dial(b.endpoint(node), "clk-pub-%d" % node)
    assert c is not None, ack
    try:
        c.raw.send(r.publish(topic, value.encode(), qos=1, retain=True, pid=1, version=5,
                             props={"MessageExpiryInterval": EXPIRY}))
        assert c.raw.expect(r.PUBACK, 5).reason < 0x80
    finally:
        c.close()


def read_retained(b, node, topic):
    c, ack = _dial(b.endpoint(node), "clk-read-%d" % node)
    assert c is not None, ack
    try:
        c.raw.send(r.subscribe(1, [(topic, 1)], version=5))
        c.raw.send(r.packet(r.PINGREQ, 0, b""))
        value = None
        while True:
            pk = c.raw.recv(5)
            if pk.type == r.PUBLISH and pk.retain:
                value = pk.payload.decode()
            if pk.type == r.PINGRESP:
                return value
    finally:
        c.close()


@pytest.mark.parametrize("case", [
    "control",
    pytest.param("publisher-behind", marks=pytest.mark.xfail(strict=True, reason=KNOWN)),
    pytest.param("reader-ahead", marks=pytest.mark.xfail(strict=True, reason=KNOWN)),
])
def test_retained_expiry_with_a_clock_off(cluster, case):
    b = cluster
    pub, reader = 1, 3
    topic = "clock/%s" % case
    publish_retained(b, pub, topic, "old")
    harness.wait_for(lambda: read_retained(b, reader, topic) == "old", 10, "node %d never served 'old'" % reader)
    if case == "publisher-behind":
        b.set_clock(pub, -JUMP)
    elif case == "reader-ahead":
        b.set_clock(reader, JUMP)
    publish_retained(b, pub, topic, "new")        # acknowledged: committed on a majority
    assert read_retained(b, pub, topic) == "new"
    # Applied everywhere within a second or two; the reader must not keep the old value.
    deadline = time.monotonic() + 5
    seen = None
    while time.monotonic() < deadline:
        seen = read_retained(b, reader, topic)
        if seen == "new":
            break
        time.sleep(0.3)
    assert seen == "new", "node %d serves %r after 'new' was acknowledged through node %d" % (reader, seen, pub)


@pytest.mark.parametrize("case", [
    "control",
    pytest.param("owner-behind", marks=pytest.mark.xfail(strict=True, reason=KNOWN)),
])
def test_session_taken_on_from_a_dead_node_keeps_its_expiry(cluster, case):
    b = cluster
    leader = b.wait_leader()
    owner = [n for n in b.ids if n != leader][0]
    if case == "owner-behind":
        b.set_clock(owner, -JUMP)
    cid = "clk-session-%s" % case
    c, ack = _dial(b.endpoint(owner), cid, clean=True, expiry=EXPIRY)
    assert c is not None, ack
    c.raw.send(r.subscribe(1, [("clock/session", 1)], version=5))
    c.raw.expect(r.SUBACK, 5)
    c.close(clean=True)                           # offline: session_release with its end time

    def released():
        d = b.dump(leader)
        return any(cid in line and "connected=0" in line for line in d.state)
    harness.wait_for(released, 10, "the release of %s never reached node %d" % (cid, leader))
    b.kill(owner)
    b.node(leader).wait_log("session %s of lost node %d: taken on" % (cid, owner), 30)
    time.sleep(0.5)
    c, ack = _dial(b.endpoint(leader), cid, clean=False, expiry=EXPIRY)
    assert c is not None, ack
    try:
        assert ack.session_present, "the session with %d s of expiry left was gone when taken on from node %d" % (
            EXPIRY, owner)
    finally:
        c.close()
