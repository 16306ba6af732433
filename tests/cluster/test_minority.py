"""A node cut off from the majority (the two others SIGSTOPped or SIGKILLed, or
the node partitioned from them by dropping the packets between their cluster
ports with iptables on the loopback addresses) refuses what needs a commit,
each answer within commit_timeout_ms plus a few seconds and never a hang:
SUBSCRIBE gets SUBACK 0x80 and a retained QoS 1 PUBLISH PUBACK 0x80. Publishes
that need no commit (not retained, between two clients connected to it) flow
until the node fences itself: once it has seen no leader for twice the
election timeout it disconnects every client (v5 DISCONNECT 0x9C, use another
server), because the majority may then give their sessions to other nodes; a
CONNECT then gets CONNACK 0x88 (v5) or return code 0x03 (3.1.1). When the
others are back the same operations succeed again, without restarting the
node that stayed up."""

import pytest

import rawmqtt as r
from clients import uid

from cluster_mqtt import PUBACK_OK, granted, raw_v5, retain, timed
from harness import ANSWER_BOUND, Partition, wait_for

HANG = ANSWER_BOUND + 10.0  # no answer by then counts as a hang
COMMIT_TIMEOUT_MS = 1000    # the refusals are answered before the fence
RECOVER_TIMEOUT = 30.0


def connack(raw, node, version):
    c = raw(node, version=version, timeout=HANG)
    return c.connect(uid("m%d" % version), expect_reason=None, version=version, timeout=HANG)


def answered(what, packet_and_time, expected):
    packet, seconds = packet_and_time
    code = packet.codes[0] if packet.type == r.SUBACK else packet.reason
    assert code == expected, "%s: got %r, expected 0x%02x" % (what, packet, expected)
    assert seconds <= ANSWER_BOUND, "%s: answered after %.1f s (bound %.1f s)" % (what, seconds, ANSWER_BOUND)


@pytest.mark.parametrize("how,keep", [("sigstop", "leader"), ("sigkill", "follower"), ("partition", "leader")])
def test_minority_refuses_writes_and_recovers(start_cluster, clients, raw, request, how, keep):
    cluster = start_cluster(settings={"commit_timeout_ms": COMMIT_TIMEOUT_MS})
    leader, _ = cluster.wait_leader()
    node = leader if keep == "leader" else cluster.followers(leader)[0]
    others = [n for n in cluster.nodes if n is not node]
    partition = Partition(node, others)
    request.addfinalizer(partition.heal)
    base = "t5/" + uid("m")
    # Connected before the others go.
    x_id = uid("x")
    x, _ = raw_v5(node, x_id)     # will send the refused SUBSCRIBE
    rp, _ = raw_v5(node)          # will send the refused retained PUBLISH
    p, _ = raw_v5(node)           # publishes to s, needs no commit
    s = clients.connected(node)
    assert s.subscribe(base + "/live", qos=1) == [1]

    if how == "partition":
        partition.cut()
    for o in others:
        if how == "sigstop":
            o.pause()
        elif how == "sigkill":
            o.kill()

    # at once: what needs no commit flows, what needs one is refused in
    # bounded time; both before the fence (commit_timeout_ms is 1 s here,
    # the fence comes 2 s after the leader was lost)
    p.publish(base + "/live", b"q0", qos=0)
    ack = p.publish(base + "/live", b"q1", qos=1, pid=2, timeout=HANG)
    assert ack.reason in PUBACK_OK, "non-retained QoS 1 PUBLISH: %r" % ack
    got = sorted(m.payload for m in s.expect_messages(2, timeout=5))
    assert got == [b"q0", b"q1"]
    answered("retained PUBLISH", timed(rp.publish, base + "/ret", b"refused", qos=1, retain=True, pid=1,
                                       timeout=HANG), 0x80)
    answered("SUBSCRIBE", timed(x.subscribe, 1, [(base + "/refused", 1)], timeout=HANG), 0x80)

    # then the fence: every client is told to use another node, new ones are refused
    for what, conn in (("publisher", p), ("subscriber of refused ops", x)):
        packet, seconds = timed(conn.expect, r.DISCONNECT, timeout=HANG)
        assert packet.reason == 0x9C, "%s: %r" % (what, packet)
        assert seconds <= ANSWER_BOUND, "%s: fenced after %.1f s" % (what, seconds)
    answered("v5 CONNECT", timed(connack, raw, node, 5), 0x88)
    answered("3.1.1 CONNECT", timed(connack, raw, node, 4), 0x03)

    if how == "partition":
        # the majority side elected a leader of its own meanwhile and serves
        new_leader, _ = cluster.wait_leader(nodes=others, not_node=node.id)
        assert retain(new_leader, base + "/majority", b"served") in PUBACK_OK
        partition.heal()
    for o in others:
        if how == "sigstop":
            o.resume()
        elif how == "sigkill":
            o.start()

    def accepted(fn, what):
        return wait_for(fn, RECOVER_TIMEOUT, what + " still refused after the others came back", interval=0.2)

    accepted(lambda: connack(raw, node, 5).reason == 0, "v5 CONNECT")
    accepted(lambda: connack(raw, node, 4).reason == 0, "3.1.1 CONNECT")
    x, _ = raw_v5(node, x_id)
    rp, _ = raw_v5(node)
    pids = iter(range(10, 60000))
    accepted(lambda: granted(x.subscribe(next(pids), [(base + "/accepted", 1)], timeout=HANG).codes[0]),
             "SUBSCRIBE")
    accepted(lambda: rp.publish(base + "/ret", b"accepted", qos=1, retain=True, pid=next(pids),
                                timeout=HANG).reason in PUBACK_OK, "retained PUBLISH")

    # Everyone converges on the state written after the recovery.
    for o in others:
        o.wait_listening()
    cluster.wait_leader()
    dumps = cluster.wait_caught_up(cluster.nodes)
    assert dumps[0].payload(base + "/ret") == b"accepted"
    if how == "partition":
        assert dumps[0].payload(base + "/majority") == b"served"
    assert (x_id.encode(), (base + "/accepted").encode()) in dumps[0].subs
