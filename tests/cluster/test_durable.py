"""Durable sessions (issue 15): once a publisher got PUBACK (QoS 1) or PUBREC
(QoS 2), every persistent session (v5 Session Expiry > 0, 3.1.1 clean
session 0) that had a matching subscription gets the message, QoS 1 at least
once and QoS 2 exactly once, through kill -9 of any one node, and on one node
through kill -9 and a restart.

Every test numbers its messages, keeps the numbers the publisher got an
acknowledgement for, and checks each one at the subscriber: lost = 0, and for
QoS 2 duplicates = 0. The default tests' publishers also check that the
acknowledgements come in the order of the publishes. Each prints its figures (`durable NAME: acked A
delivered D lost L dup X ...`; run pytest with -s, or -rA, to see them).

The subscriber is a raw-socket client that behaves as a compliant one does
(MQTT 5.0 4.3.3, the receiver's "method B"): a QoS 2 message is handed up
when it first arrives and its packet id is held from the PUBREC it sends
until the PUBREL; a PUBLISH that arrives with a held id is a duplicate,
answered with PUBREC again and discarded. So a server that reuses a held id
for a new message loses that message, as it would for a real client.

Default suite: one node (500 queued QoS 1 messages, kill -9, restart, v5 and
3.1.1); three nodes (the session owner killed, resumed on another node, and on
a third after the owner restarts, QoS 1 and 2); a connected subscriber whose
node dies with messages in flight (QoS 1 redelivered with DUP and the original
id; QoS 2: a held id gets its PUBREL resent and is not reused); inbound QoS 2
awaiting PUBREL (the publisher's PUBREL after failover completes it, the
message arrives once). Two controls run the same steps with no fault (they
pass on today's broker, so the counting is known to work). STARLING_LONG=1 adds faults while publishers keep
going: a partition isolating the subscriber's node for 10 s, SIGSTOP of it,
rolling restarts, kill -9 of the leader, of the publisher's node and of the
connected subscriber's node.

Tests for guarantees today's broker does not give yet are expected failures
through KNOWN_GAPS (one entry per scenario); remove an entry once the
guarantee holds.
"""

import collections
import os
import shutil
import subprocess
import threading
import time

import pytest

import harness
import rawmqtt as r
from clients import uid

from cluster_mqtt import EXPIRY, RESUME_TIMEOUT
from harness import Cluster, wait_for

# scenario -> why it fails on today's main (issue 15). Remove an entry when
# the scenario passes; the tests stay non-strict expected failures meanwhile.
KNOWN_GAPS = {
    "long-partition": "messages acknowledged while the subscriber's node is cut off are lost (durable sessions: "
                      "1,462 of 4,974 QoS 1 and 781 of 4,456 QoS 2 on 2026-12-08; 2,225 of 6,275 before)",
    "long-sigstop": "messages acknowledged while the subscriber's node is stopped are lost (durable sessions: "
                    "1,147 of 4,935 QoS 1, 1,100 of 4,763 QoS 2 on 2026-12-08)",
    "long-rolling": "the nodes did not agree on a leader within 30 s after a restart in one of two runs",
}


def known_gap(name):
    """The xfail mark of scenario name while it is in KNOWN_GAPS, else nothing."""
    if name in KNOWN_GAPS:
        return pytest.mark.xfail(reason="issue 15: %s" % KNOWN_GAPS[name], strict=False)
    return lambda f: f


QUIET = 6.0             # the resumed subscriber got nothing for this long: nothing more comes
DRAIN_TIMEOUT = 60.0    # and at most this long in all
SETTLE = 1.0            # s for a node to make the client's acks durable before the kill
PROPS = {"SessionExpiryInterval": EXPIRY}


# ---------------------------------------------------------------------------
# the subscriber, a compliant client over a raw socket


class Inbox:
    """What a subscriber handed up, over all its connections. QoS 1 is
    acknowledged as it arrives; QoS 2 as the receiver's method B (see the
    module doc). hold_pubrel: pids whose PUBREL is ignored once (the client
    lost it, i.e. it still waits for it); ack=False reads without answering.
    Not thread-safe: one thread drives it."""

    def __init__(self):
        self.delivered = collections.Counter()
        self.held = {}             # pid -> payload: PUBREC sent, PUBREL not received
        self.reused = []           # (pid, held payload, new payload): a new message with a held pid
        self.first_seen = {}       # payload -> (pid, dup) of its first copy on the current connection
        self.pubrels = []          # pids of the PUBRELs received on the current connection
        self.ignore_pubrel = set()
        self.events = []           # (packet type, pid, payload) in order, on the current connection

    def new_connection(self):
        self.first_seen, self.pubrels, self.events = {}, [], []
        self.ignore_pubrel = set()

    def take(self, conn, p, ack=True):
        if p.type == r.PUBLISH:
            self.events.append((r.PUBLISH, p.pid, p.payload))
            self.first_seen.setdefault(p.payload, (p.pid, p.dup))
            if not ack:
                return
            if p.qos == 2 and p.pid in self.held:
                if p.payload != self.held[p.pid]:
                    self.reused.append((p.pid, self.held[p.pid], p.payload))
                conn.try_send(r.ack_packet(r.PUBREC, p.pid, conn.version))
                return
            self.delivered[p.payload] += 1
            if p.qos == 1:
                conn.try_send(r.ack_packet(r.PUBACK, p.pid, conn.version))
            elif p.qos == 2:
                self.held[p.pid] = p.payload
                conn.try_send(r.ack_packet(r.PUBREC, p.pid, conn.version))
        elif p.type == r.PUBREL:
            self.events.append((r.PUBREL, p.pid, None))
            self.pubrels.append(p.pid)
            if p.pid in self.ignore_pubrel:
                self.ignore_pubrel.discard(p.pid)
                return
            self.held.pop(p.pid, None)
            conn.try_send(r.ack_packet(r.PUBCOMP, p.pid, conn.version))

    def drain(self, conn, want, quiet=QUIET, timeout=DRAIN_TIMEOUT):
        """Reads conn until every payload of want arrived and no id is held,
        or nothing came for quiet seconds, or timeout."""
        want = set(want)
        deadline = time.monotonic() + timeout
        while not (want <= set(self.delivered) and not self.held):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self.take(conn, conn.recv(timeout=min(quiet, left)))
            except (r.Timeout, r.Closed):
                return

    def figures(self, name, acked, qos, extra=""):
        """Prints and returns (lost payloads, duplicate count) of acked."""
        lost = [p for p in acked if not self.delivered[p]]
        dup = sum(self.delivered[p] - 1 for p in acked if self.delivered[p] > 1)
        got = sum(1 for p in acked if self.delivered[p])
        line = "durable %s: QoS %d acked %d delivered %d lost %d dup %d%s" % (
            name, qos, len(acked), got, len(lost), dup, extra)
        print(line)
        return lost, dup, line

    def check(self, name, acked, qos, extra=""):
        lost, dup, line = self.figures(name, acked, qos, extra)
        problems = []
        if lost:
            problems.append("%d acknowledged messages lost, e.g. %s" % (len(lost), [p.decode() for p in lost[:10]]))
        if qos == 2 and dup:
            problems.append("%d QoS 2 duplicates" % dup)
        if self.reused:
            problems.append("held packet ids reused for new messages: %s" % self.reused[:5])
        assert not problems, "%s\n%s" % (line, "\n".join(problems))


def numbered(tag, count, start=1):
    return [b"%s-%d" % (tag.encode(), i) for i in range(start, start + count)]


def raw_connect(node, cid, version=5, clean=False, timeout=10.0):
    """A raw connection with a persistent session (v5 Session Expiry EXPIRY,
    or 3.1.1 clean session 0 when clean is False); returns (conn, CONNACK)."""
    conn = r.RawClient(node.port, version=version, host=node.host, timeout=timeout)
    try:
        ack = conn.connect(cid, expect_reason=None, clean=clean, timeout=timeout,
                           props=PROPS if version == 5 and not clean else None)
    except BaseException:
        conn.close()
        raise
    return conn, ack


def raw_resume(nodes, cid, version=5, timeout=RESUME_TIMEOUT):
    """Reconnects cid with its persistent session on the first of nodes that
    accepts it (running ones, tried in turn until timeout); returns (conn,
    session present, node)."""
    deadline = time.monotonic() + timeout
    attempts = []
    while True:
        for node in nodes:
            if not node.running() or node.paused:
                continue
            try:
                conn, ack = raw_connect(node, cid, version, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
            except (OSError, r.Timeout, r.Closed, AssertionError) as e:
                attempts.append("node %d: %r" % (node.id, e))
                continue
            if ack.reason == 0:
                return conn, ack.session_present, node
            conn.close()
            attempts.append("node %d: CONNACK 0x%02x" % (node.id, ack.reason))
        if time.monotonic() >= deadline:
            raise AssertionError("%s could not resume on nodes %s within %.0f s: %s" % (
                cid, [n.id for n in nodes], timeout, attempts[-6:]))
        time.sleep(0.1)


def subscribe_persistent(node, cid, topic, qos, version=5):
    """Makes cid's persistent session with a subscription to topic and leaves
    it connected; returns the connection."""
    conn, ack = raw_connect(node, cid, version)
    assert ack.reason == 0, "CONNACK %r" % ack
    assert conn.subscribe(1, [(topic, qos)]).codes == [qos]
    return conn


def publish_all(node, topic, payloads, qos, version=5, window=32, timeout=120):
    """Publishes payloads through node (a clean session), up to window of
    them unacknowledged; returns once every one was acknowledged (PUBACK, or
    PUBREC then PUBCOMP), asserting reasons below 0x80 and acknowledgements
    in the order of the publishes (MQTT 5.0 4.6)."""
    conn, ack = raw_connect(node, uid("pub"), version, clean=True)
    try:
        assert ack.reason == 0, "CONNACK %r" % ack
        todo = list(reversed(payloads))
        sent, completing, pids = collections.OrderedDict(), set(), iter(range(1, 65536))
        deadline = time.monotonic() + timeout
        while todo or sent or completing:
            while todo and len(sent) + len(completing) < window:
                pid = next(pids)
                sent[pid] = todo.pop()
                conn.send(r.publish(topic, sent[pid], qos=qos, pid=pid, version=version))
            try:
                p = conn.recv(timeout=max(0.001, deadline - time.monotonic()))
            except (r.Timeout, r.Closed) as e:
                raise AssertionError("publishing through %r: %r with %d unacknowledged, %d not sent" % (
                    node, e, len(sent) + len(completing), len(todo)))
            if p.type == r.PUBCOMP and p.pid in completing:
                completing.discard(p.pid)
                continue
            want = r.PUBACK if qos == 1 else r.PUBREC
            assert p.type == want and p.reason < 0x80 and p.pid in sent, "publishing through %r: %r" % (node, p)
            first = next(iter(sent))
            assert p.pid == first, "acknowledgement of pid %d (%r) before that of pid %d (%r)" % (
                p.pid, sent[p.pid], first, sent[first])
            del sent[p.pid]
            if qos == 2:
                completing.add(p.pid)
                conn.send(r.ack(r.PUBREL, p.pid, version=version))
        conn.send(r.disconnect(version=version))
    finally:
        conn.close()
    return list(payloads)


def session_problems(cid, owner):
    """A wait_dumps problem function: '' once cid's session is owned by node
    owner, released (not connected) and its subscription replicated."""
    def problems(d):
        s = d.sessions.get(cid.encode())
        if s is None:
            return "no session %s" % cid
        if s.get("owner") != str(owner.id) or s.get("connected") != "0":
            return "session %s: owner %s connected %s" % (cid, s.get("owner"), s.get("connected"))
        if not any(k[0] == cid.encode() for k in d.subs):
            return "no subscription of %s" % cid
        return ""
    return problems


def restart(node, cluster=None):
    node.start()
    node.wait_listening()
    (cluster or Cluster([node])).wait_leader()


# ---------------------------------------------------------------------------
# one node: kill -9 and restart with the same data directory


def test_one_node_queue_control(start_node):
    """The control of the test below, with no fault: the offline session
    resumes on the running node and gets all 500."""
    one_node_queue(start_node, 5, kill=False)


@known_gap("one-node-restart")
@pytest.mark.parametrize("version", [5, 4], ids=["v5-expiry", "v311-clean0"])
def test_one_node_queue_survives_kill_and_restart(start_node, version):
    one_node_queue(start_node, version, kill=True)


def one_node_queue(start_node, version, kill):
    node = start_node()
    topic, cid = "dur1/" + uid("t"), uid("dsub")
    sub = subscribe_persistent(node, cid, topic, 1, version)
    sub.send(r.disconnect(version=version))
    sub.close()
    acked = publish_all(node, topic, numbered("one", 500), 1, version)

    if kill:
        node.kill()
        restart(node)
    conn, present, _ = raw_resume([node], cid, version)
    inbox = Inbox()
    try:
        inbox.drain(conn, acked)
    finally:
        conn.close()
    inbox.check("one-node %s (v%d)" % ("kill -9 + restart" if kill else "no fault", version), acked, 1,
                " session present %d" % present)
    assert present, "the session did not survive the restart"


# ---------------------------------------------------------------------------
# three nodes: the owner of an offline session is killed


@known_gap("owner-killed")
@pytest.mark.parametrize("qos", [1, 2])
def test_owner_killed_queue_resumes_elsewhere(cluster, qos):
    """Two offline sessions owned by node 2, 250 + 250 messages published
    through nodes 1 and 3 for each; kill -9 node 2; the first session resumes
    on node 1 at once, the second on node 3 after node 2 restarted."""
    n1, n2, n3 = cluster.nodes
    topic = "dur3/" + uid("t")
    cids = [uid("dsa"), uid("dsb")]
    for cid in cids:
        c = subscribe_persistent(n2, cid, topic, qos)
        c.send(r.disconnect(version=5))
        c.close()
    for cid in cids:
        cluster.wait_dumps(session_problems(cid, n2))
    acked = publish_all(n1, topic, numbered("a", 250), qos) + publish_all(n3, topic, numbered("c", 250), qos)

    n2.kill()
    results = []
    for cid, nodes, label in ((cids[0], [n1], "node 2 killed, resumed on node 1"),
                              (cids[1], [n3], "node 2 restarted, resumed on node 3")):
        if label.startswith("node 2 restarted"):
            restart(n2, cluster)
        conn, present, _ = raw_resume(nodes, cid)
        inbox = Inbox()
        try:
            inbox.drain(conn, acked)
        finally:
            conn.close()
        results.append((inbox, label, present))
    problems = []
    for inbox, label, present in results:
        try:
            inbox.check("owner killed, %s" % label, acked, qos, " session present %d" % present)
        except AssertionError as e:
            problems.append(str(e))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# three nodes: a connected subscriber's node dies with messages in flight


@pytest.mark.parametrize("qos", [1, 2])
def test_inflight_control(cluster, qos):
    """The control of the test below: the connection is closed instead and
    the session resumes on node 2 itself, which keeps running."""
    inflight(cluster, qos, kill=False)


@known_gap("inflight-killed")
@pytest.mark.parametrize("qos", [1, 2])
def test_inflight_survive_subscriber_node_kill(cluster, qos):
    inflight(cluster, qos, kill=True)


def inflight(cluster, qos, kill):
    """A subscriber connected to node 2 completes the first 10 messages,
    (QoS 2) sends PUBREC for the next 3 and loses their PUBREL (it holds those
    ids), then reads at least 3 more without answering (all that arrive until
    the first 10 are complete); node 2 is killed. Resumed on
    node 1: the unanswered ones come again with DUP and their ids, the held
    ids get their PUBREL and no new message uses them first, and every
    acknowledged message arrives (QoS 2: once)."""
    n1, n2, n3 = cluster.nodes
    topic, cid = "dur4/" + uid("t"), uid("dsi")
    conn = subscribe_persistent(n2, cid, topic, qos)
    cluster.wait_caught_up()
    acked = publish_all(n1, topic, numbered("i", 150), qos) + publish_all(n3, topic, numbered("j", 50), qos)

    inbox = Inbox()
    done, held, unanswered = 10, 3 if qos == 2 else 0, 3
    seen, done_pids = 0, set()
    deadline = time.monotonic() + 30

    def settled():
        # the first `done` completed (QoS 2: their PUBREL arrived and got PUBCOMP)
        return seen >= done + held + unanswered and not (done_pids & set(inbox.held))
    try:
        while not settled():
            p = conn.recv(timeout=max(0.001, deadline - time.monotonic()))
            if p.type == r.PUBLISH:
                seen += 1
                if seen <= done:
                    done_pids.add(p.pid)
                elif seen <= done + held:
                    inbox.ignore_pubrel.add(p.pid)
                else:
                    inbox.take(conn, p, ack=False)  # read, never answered
                    continue
            inbox.take(conn, p)
        held_pids = dict(inbox.held)
        pending = [(pid, pl) for t, pid, pl in inbox.events if t == r.PUBLISH][done + held:]
        time.sleep(SETTLE)
    finally:
        if kill:
            n2.kill()
        conn.close()

    conn, present, _ = raw_resume([n1] if kill else [n2], cid)
    inbox.new_connection()
    try:
        inbox.drain(conn, acked)
    finally:
        conn.close()
    # what the resumed session sent for the held ids and the unanswered messages
    pubrel_missing = [pid for pid in held_pids if pid not in inbox.pubrels]
    before_pubrel = []
    for pid in held_pids:
        for t, epid, payload in inbox.events:
            if t == r.PUBREL and epid == pid:
                break
            if t == r.PUBLISH and epid == pid and payload != held_pids[pid]:
                before_pubrel.append((pid, payload))
    not_dup = [(pl, inbox.first_seen.get(pl)) for pid, pl in pending
               if inbox.first_seen.get(pl) not in (None, (pid, True))]
    extra = " session present %d; held ids %d, PUBREL not resent %d, reused first %d; unanswered %d, " \
            "resent without DUP/id %d" % (present, len(held_pids), len(pubrel_missing), len(before_pubrel),
                                          len(pending), len(not_dup))
    inbox.check("subscriber's node %s with messages in flight" % ("killed" if kill else "not killed"), acked,
                qos, extra)
    assert present, "no session present"
    assert not pubrel_missing, "held ids %s got no PUBREL after the resume" % pubrel_missing
    assert not before_pubrel, "held ids reused for new messages before their PUBREL: %s" % before_pubrel
    assert not not_dup, "unacknowledged messages resent without DUP or with another id: %s" % not_dup[:5]


# ---------------------------------------------------------------------------
# three nodes: inbound QoS 2 awaiting PUBREL on the publisher's node


@known_gap("inbound-qos2")
def test_inbound_qos2_awaiting_pubrel_survives(cluster):
    """A publisher with a persistent session on node 2 sends 20 QoS 2
    messages, completes 15 and gets PUBREC for the last 5 without sending
    PUBREL; node 2 is killed. Resumed on node 3 it sends the 5 PUBRELs: each
    is answered PUBCOMP 0x00 (not 0x92, id not found), and the subscriber
    (an offline session on node 1) gets all 20 exactly once."""
    n1, n2, n3 = cluster.nodes
    topic, scid, pcid = "dur5/" + uid("t"), uid("dss"), uid("dsp")
    s = subscribe_persistent(n1, scid, topic, 2)
    s.send(r.disconnect(version=5))
    s.close()
    cluster.wait_dumps(session_problems(scid, n1))

    payloads = numbered("q", 20)
    pub, ack = raw_connect(n2, pcid)
    assert ack.reason == 0
    held = []
    try:
        for i, payload in enumerate(payloads, 1):
            pub.send(r.publish(topic, payload, qos=2, pid=i, version=5))
            rec = pub.expect(r.PUBREC, timeout=30)
            assert rec.pid == i and rec.reason < 0x80, "PUBREC %r" % rec
            if i <= 15:
                pub.send(r.ack(r.PUBREL, i, version=5))
                comp = pub.expect(r.PUBCOMP, timeout=30)
                assert comp.pid == i and comp.reason == 0, "PUBCOMP %r" % comp
            else:
                held.append(i)
        time.sleep(SETTLE)
    finally:
        n2.kill()
        pub.close()
    acked = payloads  # PUBREC is the acknowledgement

    pub, present, _ = raw_resume([n3], pcid)
    comps = {}
    try:
        for pid in held:
            pub.send(r.ack(r.PUBREL, pid, version=5))
        while len(comps) < len(held):
            p = pub.expect(r.PUBCOMP, timeout=30)
            comps[p.pid] = p.reason
        pub.send(r.disconnect(version=5))
    finally:
        pub.close()
    conn, spresent, _ = raw_resume([n1], scid)
    inbox = Inbox()
    try:
        inbox.drain(conn, acked)
    finally:
        conn.close()
    bad = {pid: "0x%02x" % c for pid, c in comps.items() if c != 0}
    inbox.check("inbound QoS 2 awaiting PUBREL, publisher's node killed", acked, 2,
                " publisher session present %d, PUBCOMP not 0x00 %d" % (present, len(bad)))
    assert present, "the publisher's session was not present on node 3"
    assert not bad, "PUBREL after failover answered %s (0x92: the id awaiting PUBREL was forgotten)" % bad


# ---------------------------------------------------------------------------
# STARLING_LONG: faults while publishers keep going


LONG_FOR = 10.0         # s a fault lasts
PUBLISH_EVERY = 0.005   # s between a publisher's messages
OP_TIMEOUT = 10.0       # a publish unanswered this long: the connection is given up


def _iptables_usable():
    if os.geteuid() != 0 or not shutil.which("iptables"):
        return False
    return subprocess.run(["iptables", "-w", "-S", "INPUT"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


class Publisher(threading.Thread):
    """Publishes numbered messages one at a time through the first running
    node of nodes (a clean session), moving on to the next when the
    connection fails; keeps those acknowledged (reason below 0x80)."""

    def __init__(self, name, nodes, topic, qos, stop):
        super().__init__(daemon=True)
        self.label, self.nodes, self.topic, self.qos, self.stop = name, nodes, topic, qos, stop
        self.acked, self.refused, self.unknown, self.n = [], 0, 0, 0
        self.error = None

    def _connect(self):
        while not self.stop.is_set():
            for node in self.nodes:
                if not node.running() or node.paused:
                    continue
                try:
                    conn, ack = raw_connect(node, uid("pub"), clean=True, timeout=5)
                except (OSError, r.Timeout, r.Closed, AssertionError):
                    continue
                if ack.reason == 0:
                    return conn
                conn.close()
            time.sleep(0.1)
        return None

    def run(self):
        try:
            conn = None
            while not self.stop.is_set():
                if conn is None:
                    conn = self._connect()
                    if conn is None:
                        return
                self.n += 1
                payload = b"%s-%d" % (self.label.encode(), self.n)
                pid = self.n % 65535 + 1
                try:
                    conn.send(r.publish(self.topic, payload, qos=self.qos, pid=pid, version=5))
                    p = conn.recv(timeout=OP_TIMEOUT)
                    if p.type == r.PUBREC and self.qos == 2 and p.reason < 0x80:
                        self.acked.append(payload)  # PUBREC is the acknowledgement
                        conn.send(r.ack(r.PUBREL, pid, version=5))
                        p = conn.recv(timeout=OP_TIMEOUT)
                    elif p.type in (r.PUBACK, r.PUBREC) and p.reason < 0x80:
                        self.acked.append(payload)
                    else:
                        self.refused += 1
                except (OSError, r.Timeout, r.Closed):
                    self.unknown += 1
                    conn.close()
                    conn = None
                time.sleep(PUBLISH_EVERY)
            if conn is not None:
                conn.close()
        except Exception as e:  # noqa: BLE001  (reported by the test)
            self.error = repr(e)


class Subscriber(threading.Thread):
    """A connected persistent session that resumes on the first running node
    of nodes whenever its connection fails, handing everything to an Inbox."""

    def __init__(self, cid, nodes, stop):
        super().__init__(daemon=True)
        self.cid, self.nodes, self.stop = cid, nodes, stop
        self.inbox, self.resumes, self.not_present, self.error = Inbox(), 0, 0, None
        self.conn = None
        self.last = time.monotonic()

    def run(self):
        try:
            while not self.stop.is_set():
                if self.conn is None:
                    self.conn, present, _ = raw_resume(self.nodes, self.cid, timeout=120)
                    self.resumes += 1
                    self.not_present += 0 if present else 1
                    self.inbox.new_connection()
                try:
                    self.inbox.take(self.conn, self.conn.recv(timeout=0.2))
                    self.last = time.monotonic()
                except r.Timeout:
                    pass
                except (r.Closed, OSError):
                    self.conn.close()
                    self.conn = None
            if self.conn is not None:
                self.conn.close()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)


def run_with_fault(cluster, qos, name, fault, sub_node, pub_nodes):
    """A subscriber connected to sub_node, a publisher on each of pub_nodes,
    fault(cluster) in the middle of 5 s of publishing before and after; then
    every acknowledged message is checked at the subscriber."""
    topic, cid = "durl/" + uid("t"), uid("dsl")
    conn = subscribe_persistent(sub_node, cid, topic, qos)
    conn.close()  # the Subscriber resumes it
    cluster.wait_caught_up()
    order = [sub_node] + [n for n in cluster.nodes if n is not sub_node]
    stop_pub, stop_sub = threading.Event(), threading.Event()
    sub = Subscriber(cid, order, stop_sub)
    sub.start()
    wait_for(lambda: sub.resumes, 30, "the subscriber never connected")
    pubs = []
    for i, node in enumerate(pub_nodes):
        others = [n for n in cluster.nodes if n is not node]
        pubs.append(Publisher("p%d" % i, [node] + others, topic, qos, stop_pub))
    for p in pubs:
        p.start()
    try:
        time.sleep(5)
        fault(cluster)
        time.sleep(5)
    finally:
        stop_pub.set()
        for p in pubs:
            p.join(60)
        for n in cluster.nodes:
            if n.paused:
                n.resume()
    acked = [a for p in pubs for a in p.acked]
    # wait until everything acknowledged arrived, or nothing came for QUIET s
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline and sub.is_alive():
        if set(acked) <= set(sub.inbox.delivered) or time.monotonic() - sub.last > QUIET * 2:
            break
        time.sleep(0.2)
    stop_sub.set()
    sub.join(30)
    errors = [e for e in [sub.error] + [p.error for p in pubs] if e]
    assert not errors, errors
    sub.inbox.check(name, acked, qos, " refused %d unanswered %d resumes %d (session not present %d)" % (
        sum(p.refused for p in pubs), sum(p.unknown for p in pubs), sub.resumes, sub.not_present))


def _pause(node):
    node.pause()
    time.sleep(LONG_FOR)
    node.resume()


def _partition(cluster, node):
    cut = harness.Partition(node, [n for n in cluster.nodes if n is not node])
    cut.cut()
    try:
        time.sleep(LONG_FOR)
    finally:
        cut.heal()


def _kill_restart(cluster, node):
    node.kill()
    time.sleep(3)
    restart(node, cluster)


def _rolling(cluster):
    for node in cluster.nodes:
        node.terminate()
        restart(node, cluster)
        cluster.wait_caught_up()


def _kill_leader(cluster):
    leader, _ = cluster.wait_leader()
    _kill_restart(cluster, leader)


long_only = pytest.mark.skipif(not harness.LONG, reason="STARLING_LONG=1 runs the long fault scenarios")
QOS = pytest.mark.parametrize("qos", [1, 2])


@long_only
@known_gap("long-partition")
@QOS
def test_long_partition_of_subscriber_node(cluster, qos):
    if not _iptables_usable():
        pytest.skip("needs iptables (root)")
    n1, n2, n3 = cluster.nodes
    run_with_fault(cluster, qos, "subscriber's node partitioned %.0f s" % LONG_FOR,
                   lambda c: _partition(c, n2), n2, [n1, n3])


@long_only
@known_gap("long-partition-publisher")
@QOS
def test_long_partition_of_publisher_node(cluster, qos):
    """The publisher's node cut off: what it cannot make durable it refuses
    or leaves unanswered (the publisher then moves on), never acknowledges
    and loses."""
    if not _iptables_usable():
        pytest.skip("needs iptables (root)")
    n1, n2, n3 = cluster.nodes
    run_with_fault(cluster, qos, "publisher's node partitioned %.0f s" % LONG_FOR,
                   lambda c: _partition(c, n1), n2, [n1])


@long_only
@known_gap("long-sigstop")
@QOS
def test_long_sigstop_of_subscriber_node(cluster, qos):
    n1, n2, n3 = cluster.nodes
    run_with_fault(cluster, qos, "subscriber's node SIGSTOP %.0f s" % LONG_FOR, lambda c: _pause(n2), n2, [n1, n3])


@long_only
@known_gap("long-rolling")
@QOS
def test_long_rolling_restarts(cluster, qos):
    n1, n2, n3 = cluster.nodes
    run_with_fault(cluster, qos, "rolling restarts", _rolling, n2, [n1, n3])


@long_only
@known_gap("long-kill-leader")
@QOS
def test_long_kill_leader(cluster, qos):
    n1, n2, n3 = cluster.nodes
    run_with_fault(cluster, qos, "leader killed", _kill_leader, n2, [n1, n3])


@long_only
@known_gap("long-kill-publisher")
@QOS
def test_long_kill_publisher_node(cluster, qos):
    n1, n2, n3 = cluster.nodes
    run_with_fault(cluster, qos, "publisher's node killed", lambda c: _kill_restart(c, n1), n2, [n1])


@long_only
@known_gap("long-kill-subscriber")
@QOS
def test_long_kill_connected_subscriber_node(cluster, qos):
    n1, n2, n3 = cluster.nodes
    run_with_fault(cluster, qos, "connected subscriber's node killed", lambda c: _kill_restart(c, n2), n2, [n1, n3])
