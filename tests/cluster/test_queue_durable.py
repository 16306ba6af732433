"""Durable sessions (issue 15, the core): QoS 1 messages queued for an offline
persistent session are in the replicated state before the publisher's PUBACK,
so they survive kill -9 of a one-node cluster (and its restart), and kill -9
of the node that served the session in a three-node cluster (resumed on
another node). Every acknowledged message is checked by number."""

import pytest

from clients import uid

from cluster_mqtt import persistent
from harness import Cluster

N = 500


def publish_numbered(clients, node, topic, n, start=0):
    """Publishes n QoS 1 messages numbered from start; each PUBACK is awaited."""
    pub = clients.connected(node)
    infos = [pub.publish(topic, str(i).encode(), qos=1, wait=False) for i in range(start, start + n)]
    for i, info in enumerate(infos):
        info.wait_for_publish(30)
        assert info.is_published(), "message %d not acknowledged" % i
    pub.disconnect()


def receive_numbered(client, n, timeout=60):
    """The numbers received until all of 0..n-1 came (or timeout); asserts none lost."""
    got = set()
    try:
        while len(got) < n:
            m = client.expect_message(timeout=timeout)
            got.add(int(m.payload))
    except AssertionError:
        pass
    lost = sorted(set(range(n)) - got)
    assert not lost, "%d of %d acknowledged messages lost (first: %s)" % (len(lost), n, lost[:10])


@pytest.mark.parametrize("version", [5, 4])
def test_one_node_kill_restart_keeps_queued_messages(start_node, clients, version):
    node = start_node()
    topic = uid("dq") + "/t"
    sub, sp = persistent(clients, node, version=version)
    assert sub.subscribe(topic, qos=1) == [1]
    cid = sub.client_id
    sub.disconnect()

    publish_numbered(clients, node, topic, N)
    status, body = node.api("/api/v1/sessions?client_id=" + cid)
    assert status == 200, (status, body)
    listed = body["sessions"]
    assert [x["durable_queued"] for x in listed] == [N], listed
    node.kill()
    node.start()
    node.wait_listening()
    Cluster([node]).wait_leader()

    again, sp = persistent(clients, node, client_id=cid, version=version)
    assert sp, "session not present after restart"
    receive_numbered(again, N)


def test_three_nodes_kill_owner_resume_elsewhere(cluster, clients):
    leader, _ = cluster.wait_leader()
    owner = cluster.followers(leader)[0]
    other = [n for n in cluster.nodes if n is not owner and n is not leader][0]
    topic = uid("dq3") + "/t"
    sub, sp = persistent(clients, owner)
    assert sub.subscribe(topic, qos=1) == [1]
    cid = sub.client_id
    sub.disconnect()

    publish_numbered(clients, leader, topic, N // 2)
    publish_numbered(clients, other, topic, N - N // 2, start=N // 2)
    owner.kill()

    again, sp = persistent(clients, other, client_id=cid)
    assert sp, "session not present on node %d" % other.id
    receive_numbered(again, N)


def test_connected_persistent_subscriber_gets_and_acks(start_node, clients):
    # online delivery from apply, acks become queue_ack: after a restart
    # nothing acknowledged comes back
    node = start_node()
    topic = uid("dqo") + "/t"
    sub, _ = persistent(clients, node)
    assert sub.subscribe(topic, qos=1) == [1]
    publish_numbered(clients, node, topic, 50)
    receive_numbered(sub, 50)
    marker = topic + "/m"
    assert sub.subscribe(marker, qos=1) == [1]
    publish_numbered(clients, node, marker, 1)
    sub.expect_message(timeout=10, topic=marker)

    def drained(d):
        return "" if not d.queue else "queue not empty: %r" % d.queue
    Cluster([node]).wait_dumps(drained)
    cid = sub.client_id
    sub.disconnect()
    node.kill()
    node.start()
    node.wait_listening()
    Cluster([node]).wait_leader()
    again, sp = persistent(clients, node, client_id=cid)
    assert sp
    again.expect_no_message(timeout=1.0)


def test_qos2_state_survives_kill_of_a_one_node_cluster(start_node, clients):
    # Two QoS 2 messages sent to a persistent subscriber: one answered with
    # PUBREC (the node then owes PUBREL), one not. After kill -9 and a restart
    # the resumed session resends the unanswered one with DUP and its first
    # packet id, and the PUBREL of the other: neither comes as a new message.
    import rawmqtt as r
    from cluster_mqtt import EXPIRY, raw_v5
    node = start_node()
    base = uid("dq2")
    cid = uid("q2")
    sub, _ = raw_v5(node, cid, clean=False, expiry=EXPIRY)
    assert sub.subscribe(1, [(base + "/#", 2)]).codes == [2]
    pub = clients.connected(node)
    pub.publish(base + "/a", b"no PUBREC", qos=2)
    pub.publish(base + "/b", b"PUBREC", qos=2)
    first = {}
    while len(first) < 2:
        p = sub.expect(r.PUBLISH, timeout=10)
        first[p.payload] = p
    recd = first[b"PUBREC"]
    sub.send(r.ack(r.PUBREC, recd.pid, version=5))
    assert sub.expect(r.PUBREL, timeout=10).pid == recd.pid
    node.kill()
    sub.close()
    node.start()
    node.wait_listening()
    Cluster([node]).wait_leader()

    again = r.RawClient(node.port, version=5, host=node.host, timeout=10)
    ack = again.connect(cid, clean=False, props={"SessionExpiryInterval": EXPIRY}, timeout=10)
    assert ack.session_present
    publishes, rels = [], []
    while not publishes or not rels:
        p = again.recv(timeout=10)
        if p.type == r.PUBLISH:
            publishes.append(p)
        elif p.type == r.PUBREL:
            rels.append(p.pid)
    orig = first[b"no PUBREC"]
    assert [(p.payload, p.pid, p.dup) for p in publishes] == [(b"no PUBREC", orig.pid, True)], publishes
    assert rels == [recd.pid]
    again.send(r.ack(r.PUBREC, orig.pid, version=5))
    assert again.expect(r.PUBREL, timeout=10).pid == orig.pid
    again.send(r.ack(r.PUBCOMP, orig.pid, version=5))
    again.send(r.ack(r.PUBCOMP, recd.pid, version=5))
    pub = clients.connected(node)
    pub.publish(base + "/end", b"end", qos=1)
    assert again.publishes_until(base + "/end", timeout=10) == []
