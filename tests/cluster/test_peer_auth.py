"""The cluster port admits only peers that prove they hold the cluster secret.
Garbage, a silent connection, a fourth starlingd with the wrong secret, and a
member started with the wrong secret are rejected ("cluster: peer rejected"),
never become part of the cluster, and leave it serving with its state and its
leader unchanged."""

import random
import socket

from clients import uid

from cluster_mqtt import assert_kept_out, check_serving, raw_v5
from harness import NO_LEADER, PEER_REJECTED, closed_by_peer, wait_for

REJECT_TIMEOUT = 20.0

_rng = random.Random(20240601)
GARBAGE = [
    bytes(_rng.getrandbits(8) for _ in range(4096)),   # noise
    b"\xff" * 256,                                      # huge lengths, wherever they are read
    b"\x00" * 256,                                      # zero lengths
]
SHORT_GARBAGE = [b"GET / HTTP/1.1\r\nHost: starling\r\n\r\n", b"\x01"]


def leader_history(cluster):
    """What each node has said about leadership so far."""
    return {n.id: (n.leader_reports(), NO_LEADER in n.run_log()) for n in cluster}


def rejected_somewhere(nodes):
    return wait_for(lambda: any(PEER_REJECTED in n.run_log() for n in nodes), REJECT_TIMEOUT,
                    "no node of %s logged %r" % ([n.id for n in nodes], PEER_REJECTED))


def test_garbage_and_silent_connections_on_cluster_port(cluster, clients):
    cluster.wait_leader()
    before = cluster.wait_caught_up()
    history = leader_history(cluster)
    silent = []
    try:
        for n in cluster:
            # A connection that sends nothing, one that stops after a byte, and
            # an idle MQTT connection, all left open to the end of the test.
            silent.append(socket.create_connection((n.host, n.cluster_port)))
            s = socket.create_connection((n.host, n.cluster_port))
            s.sendall(b"\x01")
            silent.append(s)
            silent.append(socket.create_connection((n.host, n.port)))
            for g in GARBAGE:
                with socket.create_connection((n.host, n.cluster_port)) as s:
                    try:
                        s.sendall(g)
                    except OSError:
                        pass        # already dropped: fine
                    assert closed_by_peer(s, 10), "node %d kept a garbage cluster connection open" % n.id
            for g in SHORT_GARBAGE:
                with socket.create_connection((n.host, n.cluster_port)) as s:
                    s.sendall(g)
                    s.shutdown(socket.SHUT_WR)
                    assert closed_by_peer(s, 10), "node %d kept a half-closed cluster connection" % n.id
            with socket.create_connection((n.host, n.port)) as s:
                s.sendall(GARBAGE[0])
                assert closed_by_peer(s, 10), "node %d kept a garbage MQTT connection open" % n.id
        for n in cluster:
            n.wait_log(PEER_REJECTED, REJECT_TIMEOUT, "after garbage on its cluster port")

        after = cluster.wait_caught_up()
        assert after[0].state == before[0].state, before[0].diff(after[0])
        assert leader_history(cluster) == history, "leadership changed under the garbage"

        # With the silent connections still open, both followers die and come
        # back: the nodes must still accept real peers.
        leader, _ = cluster.wait_leader()
        for f in cluster.followers(leader):
            f.kill()
            f.start()
        for f in cluster.followers(leader):
            f.wait_listening()
        cluster.wait_leader()
        n1, n2, n3 = cluster.nodes
        check_serving(clients, n1, n2, n3, tag="t6a")
        cluster.wait_caught_up()
    finally:
        for s in silent:
            s.close()


def test_fourth_node_with_wrong_secret_never_joins(cluster, clients, add_node):
    cluster.wait_leader()
    before = cluster.wait_caught_up()
    history = leader_history(cluster)
    intruder = add_node(cluster, 4, cluster_secret="wrong")
    intruder.may_exit = True      # giving up is fine; joining is not
    intruder.start()
    rejected_somewhere(cluster.nodes)

    after = cluster.wait_caught_up()
    assert after[0].state == before[0].state, before[0].diff(after[0])
    n1, n2, n3 = cluster.nodes
    check_serving(clients, n1, n2, n3, tag="t6b")
    if intruder.running():
        c, ack = raw_v5(intruder, uid("i"), expect=None, timeout=10)
        c.close()
        assert ack.reason == 0x88, "the intruder accepted a CONNECT: %r" % ack
    assert leader_history(cluster) == history, "the intruder disturbed the cluster's leadership"
    assert not intruder.leader_reports(), "the intruder learned a leader: %s" % intruder.leader_reports()
    for d in cluster.wait_caught_up():
        assert not [cid for cid, s in d.sessions.items() if s["owner"] == "4"]


def test_member_with_wrong_secret_cannot_join(start_cluster, clients):
    c = start_cluster(node_settings={3: {"cluster_secret": "wrong"}}, wait=False)
    n1, n2, n3 = c.nodes
    n3.may_exit = True
    c.wait_leader(nodes=[n1, n2])
    rejected_somewhere([n1, n2])
    assert_kept_out(clients, c, [n1, n2], n3, tag="t6c")
