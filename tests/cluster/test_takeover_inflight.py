"""QoS 1 messages acknowledged to their publisher while a persistent session
moves between nodes all reach the session (MQTT 5.0 4.1: the session state
holds the QoS 1/2 messages pending transmission; the broker sends them when
the session resumes). Duplicates are allowed for QoS 1.

A publisher on node 1 sends numbered QoS 1 messages at a steady rate while
the subscriber's client id reconnects alternately through nodes 2 and 3, each
CONNECT taking the session over from the connection still open on the other
node. Found by the fault suite's ownership-none scenario (issue 15): with no
fault, a message published around a takeover was PUBACKed and never queued.
"""

import random
import threading
import time

import harness  # noqa: F401  (puts tests/integration on sys.path)
import rawmqtt as r
from clients import uid

from cluster_mqtt import EXPIRY, PUBACK_OK, RECEIVE_TIMEOUT, raw_v5

TAKEOVERS = 120 if harness.LONG else 80
PUBLISH_EVERY = 0.005  # s between publishes (a PUBACK is waited for)


class Received:
    """What the subscriber's connections got, acknowledging QoS 1 as it comes."""

    def __init__(self):
        self.payloads = set()

    def take(self, conn, p):
        if p.type != r.PUBLISH:
            return
        self.payloads.add(p.payload)
        if p.qos == 1:
            conn.try_send(r.ack_packet(r.PUBACK, p.pid, 5))

    def drain_until_closed(self, conn, timeout=RECEIVE_TIMEOUT):
        for p in conn.recv_until_closed(timeout=timeout):
            self.take(conn, p)
        conn.close()

    def read_for(self, conn, seconds):
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self.take(conn, conn.recv(timeout=left))
            except r.Timeout:
                return


def publisher(node, topic, stop, acked, problems):
    pub, _ = raw_v5(node)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            payload = b"m-%d" % n
            ack = pub.publish(topic, payload, qos=1, pid=n % 65535 + 1, timeout=RECEIVE_TIMEOUT)
            if ack.reason in PUBACK_OK:
                acked.append(payload)
            time.sleep(PUBLISH_EVERY)
    except Exception as e:  # noqa: BLE001  (reported by the test)
        problems.append("publisher: %r" % e)
    finally:
        pub.disconnect()


def connect_packet(cid):
    return r.connect(cid, version=5, clean=False, props={"SessionExpiryInterval": EXPIRY})


def test_qos1_acknowledged_during_takeovers_reach_the_session(cluster):
    n1, n2, n3 = cluster.nodes
    topic = "tko/" + uid("t")
    cid = uid("mover")
    rng = random.Random()
    received = Received()

    cur, _ = raw_v5(n2, cid, clean=False, expiry=EXPIRY)
    assert cur.subscribe(1, [(topic, 1)]).codes == [1]
    cluster.wait_caught_up()  # every node routes to the subscription from here on

    stop, acked, problems = threading.Event(), [], []
    pub = threading.Thread(target=publisher, args=(n1, topic, stop, acked, problems))
    pub.start()
    try:
        nodes = [n3, n2]
        for i in range(TAKEOVERS):
            node = nodes[i % 2]
            nxt = r.RawClient(node.port, version=5, host=node.host, timeout=RECEIVE_TIMEOUT)
            nxt.send(connect_packet(cid))
            # the old connection is closed by the takeover (DISCONNECT 0x8E);
            # what it got until then counts
            received.drain_until_closed(cur)
            ack = nxt.expect(r.CONNACK, timeout=RECEIVE_TIMEOUT)
            assert ack.reason == 0 and ack.session_present, "takeover %d through node %d: %r" % (i, node.id, ack)
            cur = nxt
            received.read_for(cur, rng.uniform(0.02, 0.12))
    finally:
        stop.set()
        pub.join()
    assert not problems, problems

    # everything acknowledged is queued for the session by now: wait for it
    deadline = time.monotonic() + RECEIVE_TIMEOUT
    while time.monotonic() < deadline and not set(acked) <= received.payloads:
        received.read_for(cur, 0.5)
    cur.disconnect()
    lost = [p.decode() for p in acked if p not in received.payloads]
    assert not lost, "%d of %d acknowledged QoS 1 messages never reached the session over %d takeovers: %s" % (
        len(lost), len(acked), TAKEOVERS, lost[:20])
