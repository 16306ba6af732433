"""A session that moved from one node to another gets each message once,
also when its old node still receives the same messages for subscribers of
its own: the old node passes a forwarded message on to the new owner only
when the sender routed it by the old ownership (the forwarded message carries
the log index the sender had applied), so a subscriber reached directly is
not reached twice."""

from clients import uid

from cluster_mqtt import end_markers, exactly, gather_payloads, persistent, resume


def test_a_moved_session_is_not_reached_twice_through_its_old_node(cluster, clients):
    n1, n2, n3 = cluster.nodes
    base = "mv/" + uid("t")
    cid = uid("mover")
    old, _ = persistent(clients, n2, cid)
    assert old.subscribe(base + "/#", qos=1) == [1]
    old.disconnect()
    stay = clients.connected(n2)            # keeps node 2 a destination of every message
    assert stay.subscribe(base + "/#", qos=1) == [1]
    new, present, _ = resume(clients, [n3], cid, 5)
    assert present
    cluster.wait_caught_up()

    pub = clients.connected(n1)
    want = [b"m%03d" % i for i in range(200)]
    for payload in want:
        pub.publish(base + "/x", payload, qos=1)
    for who, sub in (("the moved session on node 3", new), ("the subscriber on node 2", stay)):
        got = gather_payloads(sub, want)
        got += end_markers([sub], [pub], base + "/end")[0]
        exactly(got, want, who)
