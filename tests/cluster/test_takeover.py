"""A persistent session follows its client to whichever node it reconnects to.

Reconnecting with clean_start false on another node finds the session
(session present), with its subscriptions, the messages queued while it was
offline and the ones it had not acknowledged (resent with DUP and their
original packet identifiers, [MQTT-4.4.0-1]); an older connection still open
on the old node is closed, in MQTT 5 with DISCONNECT 0x8E. Two connections
racing for one client id on two nodes leave exactly one connected. When a
node is killed, its clients resume elsewhere with every subscription, and the
wills of its clients (delay 0) are published by the cluster.
"""

import threading

import pytest

import harness
import rawmqtt as r
from clients import sub_props, uid, will_props

from cluster_mqtt import (EXPIRY, RECEIVE_TIMEOUT, RESUME_TIMEOUT, end_markers, exactly, gather_payloads,
                          persistent, raw_v5, resume, subscribed)
from harness import wait_for

RACES = 20 if harness.LONG else 6
VICTIMS = ["follower", "leader"]


def owned_by(client_id, node):
    """A wait_dumps problem function: '' once node owns client_id's session."""
    def problems(d):
        s = d.sessions.get(client_id.encode())
        owner = None if s is None else s.get("owner")
        return "" if owner == str(node.id) else "session %s owned by %s, not node %d" % (client_id, owner, node.id)
    return problems


def taken_over(conn, version):
    """Reads conn until the node closes it; asserts it said why the MQTT 5 way
    (DISCONNECT 0x8E Session taken over) or, in 3.1.1, sent no DISCONNECT."""
    got = conn.recv_until_closed(timeout=RECEIVE_TIMEOUT)
    disconnects = [p.reason for p in got if p.type == r.DISCONNECT]
    if version == 5:
        assert disconnects == [0x8E], "old connection: %s before the close, expected DISCONNECT 0x8E" % got
    else:
        assert disconnects == [], "3.1.1 has no server DISCONNECT: %s" % got


@pytest.mark.parametrize("version", [5, 4])
def test_session_moves_to_another_node(cluster, clients, raw, version):
    n1, n2, n3 = cluster.nodes
    base = "tk1/" + uid("mv")
    cid = uid("mover")
    old = raw(n1, version=version)
    old.connect(cid, clean=False, props={"SessionExpiryInterval": EXPIRY} if version == 5 else None)
    props = {"SubscriptionIdentifier": 4} if version == 5 else None
    assert old.subscribe(1, [(base + "/a/#", 1), (base + "/b", 2)], props=props).codes == [1, 2]
    cluster.wait_caught_up()

    new, sp, _ = resume(clients, [n2], cid, version)
    assert sp, "no session present on node 2"
    taken_over(old, version)
    cluster.wait_dumps(owned_by(cid, n2))

    pubs = [clients.connected(n3), clients.connected(n1)]
    want = []
    for p in pubs:
        for topic in ("a/x", "b"):
            payload = ("%s %s" % (topic, p.client_id)).encode()
            p.publish(base + "/" + topic, payload, qos=2)
            want.append(payload)
    got = gather_payloads(new, want)
    got += end_markers([new], pubs, base + "/a/end")[0]
    exactly(got, want, "%s resumed on node 2" % cid)
    for m in got:
        assert m.qos == (1 if m.topic.endswith("/a/x") else 2), m
        if version == 5:
            assert m.props.get("SubscriptionIdentifier") == [4], m


def test_queued_messages_follow_the_session(cluster, clients):
    n1, n2, n3 = cluster.nodes
    base = "tk2/" + uid("q")
    sessions = [subscribed(persistent(clients, n1, version=v)[0], [base + "/#"], qos=2) for v in (5, 4)]
    pubs = [clients.connected(n3), clients.connected(n2, version=4)]
    cluster.wait_caught_up()
    for s in sessions:
        s.disconnect()
    want, streams = [], {}
    for i in range(20):
        payload = ("queued %d" % i).encode()
        qos = 1 if i % 5 else 2
        pubs[i % 2].publish(base + "/t", payload, qos=qos)
        want.append(payload)
        streams.setdefault((i % 2, qos), []).append(payload)
    resumed = []
    for s, node in zip(sessions, (n2, n3)):
        c, sp, _ = resume(clients, [node], s.client_id, s.version)
        assert sp, "%s: no session present on node %d" % (s.client_id, node.id)
        resumed.append(c)
    got = [gather_payloads(c, want) for c in resumed]
    for c, msgs, more in zip(resumed, got, end_markers(resumed, pubs, base + "/end")):
        exactly(msgs + more, want, "%s (v%d) resumed elsewhere" % (c.client_id, c.version))
        # An Ordered Topic keeps the order of one publisher's messages at one QoS (v5 4.6).
        for (j, qos), stream in streams.items():
            mine = set(stream)
            assert [m.payload for m in msgs if m.payload in mine] == stream, (
                "%s: the QoS %d messages of publisher %d out of order" % (c.client_id, qos, j))


def test_unacknowledged_messages_redelivered_on_the_new_node(cluster, clients, raw):
    n1, n2, n3 = cluster.nodes
    base = "tk3/" + uid("dup")
    cid = uid("unacked")
    old, _ = raw_v5(n1, cid, clean=False, expiry=EXPIRY)
    assert old.subscribe(1, [(base + "/#", 2)]).codes == [2]
    pub = clients.connected(n3)
    cluster.wait_caught_up()
    sent = [("q1", b"one a", 1), ("q1", b"one b", 1), ("q2", b"two, no PUBREC", 2), ("q2", b"two, PUBREC", 2)]
    for topic, payload, qos in sent:
        pub.publish(base + "/" + topic, payload, qos=qos)
    first = {}
    while len(first) < len(sent):
        p = old.expect(r.PUBLISH, timeout=RECEIVE_TIMEOUT)
        first[p.payload] = p
    # Only one of them is answered, with PUBREC; its PUBREL then stays without PUBCOMP.
    recd = first[b"two, PUBREC"]
    old.send(r.ack(r.PUBREC, recd.pid, version=5))
    assert old.expect(r.PUBREL, timeout=RECEIVE_TIMEOUT).pid == recd.pid

    new = raw(n2, version=5, timeout=RESUME_TIMEOUT)
    ack = new.connect(cid, clean=False, props={"SessionExpiryInterval": EXPIRY}, timeout=RESUME_TIMEOUT)
    assert ack.session_present, "no session present on node 2: %r" % ack
    taken_over(old, 5)

    again, rels = {}, []
    while len(again) < 3 or not rels:
        p = new.recv(timeout=RECEIVE_TIMEOUT)
        if p.type == r.PUBLISH:
            assert p.payload not in again, "%r resent twice" % p
            again[p.payload] = p
        elif p.type == r.PUBREL:
            rels.append(p.pid)
        else:
            raise AssertionError("unexpected %r on the resumed connection" % p)
    assert sorted(again) == sorted(payload for _, payload, _ in sent[:3]), (
        "resent PUBLISH packets: %s (the PUBREC'd one must come back as a PUBREL only)" % sorted(again))
    for payload, p in again.items():
        orig = first[payload]
        assert (p.dup, p.qos, p.pid, p.topic) == (True, orig.qos, orig.pid, orig.topic), (
            "resent %r, first sent as %r: expected DUP and the original packet identifier" % (p, orig))
    assert rels == [recd.pid], "PUBREL resent for %s, expected %d" % (rels, recd.pid)

    # Acknowledged now: they are done, nothing comes again.
    for payload, p in again.items():
        new.send(r.ack(r.PUBACK if p.qos == 1 else r.PUBREC, p.pid, version=5))
    new.send(r.ack(r.PUBCOMP, recd.pid, version=5))
    pub.publish(base + "/end", b"end", qos=1)
    assert new.publishes_until(base + "/end", timeout=RECEIVE_TIMEOUT) == []
    assert [(p.type, p.pid) for p in new.others] == [(r.PUBREL, again[b"two, no PUBREC"].pid)], new.others


def test_two_connections_racing_for_one_client_id(cluster, clients):
    # At most one node serves a client id: of two connections racing for it
    # on two nodes, exactly one stays; one that had CONNACK 0 and lost got
    # DISCONNECT 0x8E; the replicated owner is the survivor's node.
    nodes = cluster.nodes
    for k in range(RACES):
        pair = (nodes[k % 3], nodes[(k + 1) % 3])
        cid = uid("race")
        conns = [r.RawClient(n.port, version=5, host=n.host, timeout=RESUME_TIMEOUT) for n in pair]
        acks = [None, None]
        barrier = threading.Barrier(2)

        def connect(i):
            barrier.wait()
            try:
                acks[i] = conns[i].connect(cid, expect_reason=None, clean=k % 2 == 0,
                                           props={"SessionExpiryInterval": EXPIRY}, timeout=RESUME_TIMEOUT)
            except (r.Closed, r.Timeout, OSError) as e:
                acks[i] = e
        threads = [threading.Thread(target=connect, args=(i,), daemon=True) for i in (0, 1)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(RESUME_TIMEOUT + 5)
            seen = [[], []]
            closed = [False, False]

            def one_left():
                for i, c in enumerate(conns):
                    if not closed[i]:
                        closed[i] = not c.is_open(timeout=5)
                        seen[i] += c.pending
                return closed.count(False) == 1
            wait_for(one_left, RECEIVE_TIMEOUT, lambda: "race %d for %s on nodes %s: CONNACKs %s, closed %s" % (
                k, cid, [n.id for n in pair], acks, closed))
            winner = closed.index(False)
            loser = 1 - winner
            assert getattr(acks[winner], "reason", None) == 0, acks
            if getattr(acks[loser], "reason", None) == 0:
                reasons = [p.reason for p in seen[loser] if p.type == r.DISCONNECT]
                assert reasons == [0x8E], "race %d: the connection taken over got %s" % (k, seen[loser])
            cluster.wait_dumps(owned_by(cid, pair[winner]))
            if k == RACES - 1:
                # The survivor is served: it subscribes and gets a publish from the third node.
                assert conns[winner].subscribe(1, [("race/" + cid, 1)]).codes == [1]
                cluster.wait_caught_up()
                clients.connected(nodes[(k + 2) % 3]).publish("race/" + cid, b"served", qos=1)
                assert [p.payload for p in conns[winner].publishes_until("race/" + cid, timeout=RECEIVE_TIMEOUT)] == []
        finally:
            for c in conns:
                c.close()


@pytest.mark.parametrize("victim", VICTIMS)
def test_clients_of_a_killed_node_resume_elsewhere_and_their_wills_are_published(cluster, clients, victim):
    leader, _ = cluster.wait_leader()
    dead = leader if victim == "leader" else cluster.followers(leader)[0]
    alive = [n for n in cluster if n is not dead]
    base = "tk5/" + uid("kill")
    watcher = subscribed(clients.connected(alive[0]), [base + "/will/#", base + "/common"])
    a, _ = persistent(clients, dead, version=5, will={
        "topic": base + "/will/a", "payload": b"a died", "qos": 1, "properties": will_props(WillDelayInterval=0)})
    assert a.subscribe(base + "/a/#", qos=1, properties=sub_props(SubscriptionIdentifier=11)) == [1]
    assert a.subscribe(base + "/common", qos=2) == [2]
    b, _ = persistent(clients, dead, version=4, will={"topic": base + "/will/b", "payload": b"b died", "qos": 1})
    subscribed(b, [base + "/b", base + "/common"])
    cluster.wait_caught_up()

    dead.kill()
    a2, sp_a, node_a = resume(clients, alive, a.client_id, 5)
    b2, sp_b, node_b = resume(clients, alive[::-1], b.client_id, 4)
    assert sp_a and sp_b, "session present after the kill: a %s on node %d, b %s on node %d" % (
        sp_a, node_a.id, sp_b, node_b.id)

    pub = clients.connected(alive[1])
    for topic, payload, qos in (("a/x", b"to a", 1), ("common", b"to both", 2), ("b", b"to b", 1)):
        pub.publish(base + "/" + topic, payload, qos=qos)
    got_a = gather_payloads(a2, [b"to a", b"to both"])
    got_b = gather_payloads(b2, [b"to b", b"to both"])
    wills = gather_payloads(watcher, [b"a died", b"b died"])
    # Their sessions are owned by the survivors now: nothing more will publish the wills.
    for c, node in ((a2, node_a), (b2, node_b)):
        cluster.wait_dumps(owned_by(c.client_id, node), nodes=alive)
    late = end_markers([a2, b2, watcher], [pub], base + "/common")
    exactly(got_a + late[0], [b"to a", b"to both"], "a, resumed on node %d" % node_a.id)
    exactly(got_b + late[1], [b"to b", b"to both"], "b, resumed on node %d" % node_b.id)
    exactly([m for m in wills + late[2] if m.topic != base + "/common"], [b"a died", b"b died"],
            "the will watcher on node %d" % alive[0].id)
    for m in got_a:
        assert (m.qos, m.props.get("SubscriptionIdentifier")) == ((1, [11]) if m.payload == b"to a" else (2, None)), m
    for m in wills:
        if m.topic != base + "/common":
            assert (m.topic, m.qos) == (base + "/will/" + m.payload[:1].decode(), 1), m
