"""Cluster membership through starlingctl and the admin API (GET
/api/v1/status, POST /api/v1/cluster/{join,leave,remove,transfer}).

`cluster status` lists the voters, the leader and whether each is alive; a
fourth node started as a one-node cluster with the same name and secret joins
with `cluster join` while QoS 1 traffic flows between the others (no
acknowledged message lost), then serves; joining again is a no-op; `cluster
remove` from another node makes it stop and say why, with the traffic
unaffected; `transfer` hands leadership to a chosen node (or to any other);
`leave` takes a follower out. starlingctl's exit status: 0 done or nothing to
do, 1 refused or failed, 2 bad usage, 3 admin API unreachable.
"""

import re
import threading

from clients import uid

from cluster_mqtt import check_serving, end_markers, exactly, gather_payloads, persistent, retain, subscribed
from harness import free_port, run_ctl, wait_for

MEMBERSHIP_TIMEOUT = 30.0
LEADER_STATES = ("leader", 2)   # the member's state as a name or as libraft's number
VOTER_ROLES = ("voter", 0)


def members(node):
    """{node id: member} from node's GET /api/v1/status."""
    return {m["id"]: m for m in node.status()["members"]}


def wait_members(nodes, ids, timeout=MEMBERSHIP_TIMEOUT):
    """Waits until the status of each of nodes lists exactly ids, all alive."""
    ids = sorted(ids)

    def agreed():
        return all(sorted(members(n)) == ids and all(m.get("alive") for m in members(n).values()) for n in nodes)
    wait_for(agreed, timeout, lambda: "members (id: alive) as nodes %s see them: %s, expected %s all alive" % (
        [n.id for n in nodes], {n.id: {i: m.get("alive") for i, m in members(n).items()} for n in nodes}, ids))


def said(out, err, *words):
    """True when starlingctl's output mentions each of words (case-insensitive)."""
    text = (out + err).lower()
    return all(w.lower() in text for w in words)


class Traffic(threading.Thread):
    """QoS 1 messages from a publisher on one node to a subscriber on another,
    one at a time, until finish(). acked: payloads whose PUBACK arrived;
    unanswered: payloads without a PUBACK within the publish timeout."""

    def __init__(self, clients, pub_node, sub_node, topic):
        super().__init__(name="traffic", daemon=True)
        self.topic = topic
        self.sub = subscribed(clients.connected(sub_node), [topic])
        self.pub = clients.connected(pub_node)
        self.acked, self.unanswered = [], []
        self.error = None
        self.halt = threading.Event()

    def run(self):
        i = 0
        while not self.halt.is_set():
            payload = ("%d" % i).encode()
            i += 1
            if self.pub.disconnected.is_set():
                self.error = "the publisher was disconnected"
                return
            try:
                self.pub.publish(self.topic, payload, qos=1, timeout=10)
            except AssertionError:
                self.unanswered.append(payload)
            else:
                self.acked.append(payload)

    def wait_acked(self, n, timeout=MEMBERSHIP_TIMEOUT):
        """Waits until n messages were acknowledged in all."""
        wait_for(lambda: len(self.acked) >= n or self.error, timeout, lambda: "traffic: %d acknowledged, %d "
                 "unanswered, waiting for %d" % (len(self.acked), len(self.unanswered), n))
        assert not self.error, self.error

    def finish(self):
        """Stops publishing; asserts every acknowledged message reached the
        subscriber exactly once and every publish was acknowledged."""
        self.halt.set()
        self.join(30)
        assert not self.error, self.error
        got = gather_payloads(self.sub, self.acked)
        got += end_markers([self.sub], [self.pub], self.topic)[0]
        got = [m for m in got if m.payload not in set(self.unanswered)]
        exactly(got, self.acked, "traffic subscriber (%d acknowledged)" % len(self.acked))
        assert not self.unanswered, "%d publishes got no PUBACK, e.g. %s" % (len(self.unanswered), self.unanswered[:5])


def test_status_lists_voters_leader_and_liveness(cluster, clients):
    leader, _ = cluster.wait_leader()
    wait_members(cluster.nodes, [n.id for n in cluster])

    def view(n):
        """What is wrong with node n's status ('' if nothing)."""
        st = n.status()
        ms = st["members"]
        wrong = []
        if (st["node"], st["leader"]) != (n.id, leader.id):
            wrong.append("node %s, leader %s" % (st["node"], st["leader"]))
        if [m["id"] for m in ms if m.get("self")] != [n.id]:
            wrong.append("self is not node %d alone" % n.id)
        if sorted((m["id"], m["address"]) for m in ms) != [(x.id, x.cluster_addr) for x in cluster]:
            wrong.append("members %s" % [(m["id"], m["address"]) for m in ms])
        if not all(m["role"] in VOTER_ROLES and m.get("alive") for m in ms):
            wrong.append("not all alive voters: %s" % [(m["id"], m["role"], m.get("alive")) for m in ms])
        # each member's state is the one it last reported: the leader's shows up shortly
        if [m["id"] for m in ms if m.get("state") in LEADER_STATES] != [leader.id]:
            wrong.append("states %s" % [(m["id"], m.get("state")) for m in ms])
        return "; ".join(wrong)
    wait_for(lambda: not any(view(n) for n in cluster), MEMBERSHIP_TIMEOUT, lambda: "status views: %s" % {
        n.id: view(n) for n in cluster})
    rc, out, err = cluster.nodes[1].ctl("cluster", "status")
    assert rc == 0, "cluster status exited %d: %s%s" % (rc, out, err)
    assert all(x.cluster_addr in out for x in cluster) and "leader" in out.lower(), out

    # sessions, subscriptions and retained messages of the whole cluster
    base = "mb1/" + uid("st")
    s, _ = persistent(clients, cluster.nodes[1])
    subscribed(s, [base + "/#"])
    retain(cluster.nodes[2], base + "/r", b"kept")
    cluster.wait_caught_up()
    for command, needle in (("sessions", s.client_id), ("subscriptions", base + "/#"), ("retained", base + "/r")):
        rc, out, err = cluster.nodes[0].ctl(command)
        assert rc == 0 and needle in out, "starlingctl %s exited %d without %r: %s%s" % (command, rc, needle, out, err)


# The traffic's paho subscriber reads in its own thread: on a loaded machine it
# falls behind the publisher (which waits only for its PUBACK), and past
# max_queued (1000 by default) its node drops acknowledged messages by design
# (drop_new), which the exactly-once check would then report as lost. The
# queue is unbounded here, so what is checked is the cluster's own loss.
UNBOUNDED_QUEUE = {"max_queued": 0}


def test_join_and_remove_a_fourth_node_while_traffic_flows(start_cluster, clients, start_joiner):
    cluster = start_cluster(settings=UNBOUNDED_QUEUE)
    n1, n2, n3 = cluster.nodes
    base = "mb2/" + uid("j")
    traffic = Traffic(clients, n1, n2, base + "/traffic")
    traffic.start()
    try:
        traffic.wait_acked(20)
        n4 = start_joiner(4)
        rc, out, err = n4.ctl("cluster", "join", n2.cluster_addr)
        assert rc == 0, "cluster join exited %d: %s%s" % (rc, out, err)
        # It restarts in place (execv: the same process) and catches up.
        cluster.nodes.append(n4)
        cluster.wait_leader(not_node=4)
        n4.wait_listening()
        n4.wait_admin()
        assert n4.running(), "node 4 exited after joining"
        cluster.wait_caught_up()
        wait_members(cluster.nodes, [1, 2, 3, 4])
        traffic.wait_acked(len(traffic.acked) + 20)

        # It serves: a subscriber on node 4 gets a publish from node 1, and back.
        s4 = subscribed(clients.connected(n4), [base + "/four"])
        s1 = subscribed(clients.connected(n1), [base + "/one"])
        cluster.wait_caught_up()
        clients.connected(n1).publish(base + "/four", b"to node 4", qos=1)
        clients.connected(n4).publish(base + "/one", b"from node 4", qos=1)
        gather_payloads(s4, [b"to node 4"])
        gather_payloads(s1, [b"from node 4"])
        s4.disconnect()

        # Joining again is a no-op.
        rc, out, err = n4.ctl("cluster", "join", n1.cluster_addr)
        assert rc == 0 and said(out, err, "already"), "second join exited %d: %s%s" % (rc, out, err)
        assert sorted(members(n1)) == [1, 2, 3, 4]

        # Removed from another node while the traffic flows: it stops and says why.
        before = len(traffic.acked)
        n4.may_exit = True
        rc, out, err = n3.ctl("cluster", "remove", "4")
        assert rc == 0, "cluster remove 4 exited %d: %s%s" % (rc, out, err)
        n4.wait_exit(MEMBERSHIP_TIMEOUT)
        assert "was removed from cluster" in n4.run_log(), n4.run_log()[-3000:]
        cluster.nodes.remove(n4)
        wait_members(cluster.nodes, [1, 2, 3])
        traffic.wait_acked(before + 20)
    finally:
        traffic.halt.set()
    traffic.finish()
    check_serving(clients, n1, n2, n3, tag=base)


def test_transfer_moves_leadership(cluster, clients):
    leader, term = cluster.wait_leader()
    target, via = cluster.followers(leader)
    rc, out, err = via.ctl("cluster", "transfer", target.id)
    assert rc == 0, "cluster transfer %d exited %d: %s%s" % (target.id, rc, out, err)
    # the node that was asked logs who asked and what came of it
    wait_for(lambda: re.search(r" info admin 127\.0\.0\.\d+:\d+: cluster transfer node %d: 200 ok$" % target.id,
                               via.log(), re.M), MEMBERSHIP_TIMEOUT, lambda: via.log()[-3000:])
    new, new_term = cluster.wait_leader(min_term=term)
    assert new is target, "leader is node %d, transferred to node %d" % (new.id, target.id)
    wait_for(lambda: all(n.status()["leader"] == target.id for n in cluster), MEMBERSHIP_TIMEOUT,
             lambda: "status leaders: %s" % {n.id: n.status()["leader"] for n in cluster})
    # Without a node: to whichever voter is most up to date, not the leader itself.
    rc, out, err = target.ctl("cluster", "transfer")
    assert rc == 0, "cluster transfer exited %d: %s%s" % (rc, out, err)
    cluster.wait_leader(min_term=new_term, not_node=target.id)
    check_serving(clients, *cluster.nodes, tag="mb3")


def test_leave_on_a_follower(cluster, clients):
    leader, _ = cluster.wait_leader()
    gone = cluster.followers(leader)[0]
    gone.may_exit = True
    rc, out, err = gone.ctl("cluster", "leave")
    assert rc == 0, "cluster leave exited %d: %s%s" % (rc, out, err)
    gone.wait_exit(MEMBERSHIP_TIMEOUT)
    rest = [n for n in cluster if n is not gone]
    wait_members(rest, [n.id for n in rest])
    check_serving(clients, rest[0], rest[1], rest[0], tag="mb4")


def test_ctl_refusals_usage_and_unreachable(cluster):
    n1, n2, _ = cluster.nodes
    rc, out, err = n1.ctl("cluster", "remove", "99")
    assert rc == 1 and "99" in out + err, "remove of an unknown node exited %d: %s%s" % (rc, out, err)
    assert sorted(members(n1)) == [1, 2, 3]
    # A member joining its own cluster: nothing to do.
    rc, out, err = n2.ctl("cluster", "join", n1.cluster_addr)
    assert rc == 0 and said(out, err, "already"), "join of a member exited %d: %s%s" % (rc, out, err)
    for args in ([], ["cluster"], ["cluster", "frobnicate"], ["cluster", "remove"], ["no-such-command"]):
        rc, out, err = n1.ctl(*args)
        assert rc == 2 and err.strip(), "starlingctl %s exited %d (expected 2 and a usage message): %s%s" % (
            " ".join(args), rc, out, err)
    rc, out, err = run_ctl("--no-such-option", "cluster", "status")
    assert rc == 2, "an unknown option exited %d: %s%s" % (rc, out, err)
    closed = "http://127.0.0.1:%d" % free_port("127.0.0.1")
    rc, out, err = run_ctl("--url", closed, "cluster", "status")
    assert rc == 3 and err.strip(), "status from %s (nothing listens) exited %d: %s%s" % (closed, rc, out, err)
