"""kill -9 and restart on the same data dir keep every acknowledged session,
subscription and retained message: on a one-node starlingd (a one-voter
cluster) the state after restart equals the state before the kill, and a
follower of the three-node cluster catches up with what was written while it
was down. Checked with --dump and with MQTT: clean_start false finds its
session, which still receives on its old subscriptions, and a new subscriber
gets the retained messages."""

import time

import pytest

import rawmqtt as r
from clients import sub_props, uid

from cluster_mqtt import PUBACK_OK, persistent, receive_topics, retain
from harness import Cluster, settled


class State:
    """Acknowledged state made through MQTT and what it must look like:
    sessions [(client id, version, a topic its subscriptions match)],
    subs {(client id, filter): qos}, retained {topic: payload}."""

    def __init__(self, base):
        self.base = base
        self.sessions, self.subs, self.retained = [], {}, {}

    def session(self, clients, node, version, filters, topic, stay=False):
        c, sp = persistent(clients, node, version=version)
        assert not sp
        for f, qos in filters:
            props = sub_props(SubscriptionIdentifier=3) if version == 5 else None
            assert c.subscribe(self.base + f, qos=qos, properties=props) == [qos]
            self.subs[(c.client_id.encode(), (self.base + f).encode())] = str(qos)
        self.sessions.append((c.client_id, version, self.base + topic))
        if not stay:
            c.disconnect()
        return c

    def retain(self, node, suffix, payload):
        assert retain(node, self.base + suffix, payload) in PUBACK_OK
        self.retained[self.base + suffix] = payload

    def problems(self, dump):
        out = []
        for cid, _, _ in self.sessions:
            if cid.encode() not in dump.sessions:
                out.append("no session %r" % cid)
        for key, qos in self.subs.items():
            if key not in dump.subs or dump.subs[key]["qos"] != qos:
                out.append("sub %r is %r" % (key, dump.subs.get(key)))
        for topic, payload in self.retained.items():
            if dump.payload(topic) != payload:
                out.append("retained %r is %r" % (topic, dump.payload(topic)))
        return "; ".join(out)

    def check_mqtt(self, clients, node):
        """Every session is present and still subscribed; every retained
        message reaches a new subscriber."""
        pub = clients.connected(node)
        for cid, version, topic in self.sessions:
            c, sp = persistent(clients, node, client_id=cid, version=version)
            assert sp, "%s: CONNACK without session present on %r" % (cid, node)
            pub.publish(topic, b"after restart", qos=1)
            m = c.expect_message(timeout=5, topic=topic)
            assert m.payload == b"after restart"
            c.disconnect()
        sub = clients.connected(node)
        assert sub.subscribe(self.base + "/r/#", qos=1) == [1]
        receive_topics(sub, self.retained, timeout=10)


def make_state(clients, session_node, retain_nodes, base):
    s = State(base)
    s.session(clients, session_node, 5, [("/a/#", 1), ("/a2", 2)], "/a/x")
    s.session(clients, session_node, 4, [("/b/+", 1)], "/b/y")
    for i, node in enumerate(retain_nodes):
        s.retain(node, "/r/%d" % i, ("retained %d" % i).encode())
    s.retain(retain_nodes[0], "/r/bin", bytes(range(256)))
    return s


def test_single_node_kill_restart_keeps_state(start_node, clients):
    node = start_node()
    state = make_state(clients, node, [node], "t4/" + uid("s"))
    before = Cluster([node]).wait_dumps(settled)[0]
    assert not state.problems(before)
    node.kill()
    stopped = node.dump()
    assert stopped.state == before.state, "--dump of the stopped node differs:\n" + before.diff(stopped)

    node.start()
    node.wait_listening()
    Cluster([node]).wait_leader()
    after = node.dump()
    assert after.state == before.state, "state changed over kill -9 and restart:\n" + before.diff(after)
    assert after.applied_index >= before.applied_index
    state.check_mqtt(clients, node)


def test_follower_kill_restart_catches_up(cluster, clients):
    leader, _ = cluster.wait_leader()
    follower, other = cluster.followers(leader)
    state = make_state(clients, follower, [follower, leader], "t4c/" + uid("f"))
    # One client is connected to the follower when it dies.
    state.session(clients, follower, 5, [("/c", 1)], "/c", stay=True)
    cluster.wait_caught_up()
    follower.kill()

    # Written while the follower is down: it must catch up on these.
    state.retain(other, "/r/down", b"while down")
    state.session(clients, other, 5, [("/d/#", 0)], "/d/z")
    cluster.wait_dumps(state.problems, nodes=[leader, other])

    follower.start()
    follower.wait_listening()
    cluster.wait_leader()
    dumps = cluster.wait_caught_up(cluster.nodes)
    assert not state.problems(dumps[0])
    state.check_mqtt(clients, follower)


def test_a_will_published_before_a_restart_is_not_published_again(start_node, clients, raw):
    # A persistent session's delayed will is published once: when its delay
    # ran out, the release recorded in the store says it is no longer pending,
    # so the node restarting (kill -9) before the session ends does not publish
    # it a second time. A will still pending at the kill is published after
    # the restart, to the subscriptions loaded from the store (here a
    # persistent watcher's, queued until it reconnects).
    node = start_node()
    base = uid("wr")
    watcher, sp = persistent(clients, node, version=5)
    assert watcher.subscribe(base + "/#", qos=1) == [1]
    for name, delay in (("early", 1), ("late", 300)):
        c = raw(node, version=5)
        c.send(r.connect(base + "-" + name, version=5, clean=False, props={"SessionExpiryInterval": 300},
                         will={"topic": base + "/" + name, "payload": b"gone", "qos": 1,
                               "props": {"WillDelayInterval": delay}}))
        assert c.expect(r.CONNACK).reason == 0
        c.close()        # no DISCONNECT: the will is due after its delay
    assert watcher.expect_message(timeout=10).topic == base + "/early"

    def released(dump):
        s = dump.sessions.get((base + "-early").encode())
        return s is not None and s["connected"] == "0" and s.get("will") == "none"
    deadline = time.monotonic() + 10
    while not released(node.dump()):
        assert time.monotonic() < deadline, "the published will is still pending in the store:\n" + node.dump().text
        time.sleep(0.05)

    node.kill()
    node.start()
    node.wait_listening()
    Cluster([node]).wait_leader()
    again, sp = persistent(clients, node, version=5, client_id=watcher.client_id)
    assert sp, "the watcher's session did not survive the restart"
    got = again.expect_message(timeout=10)
    assert got.topic == base + "/late", "the will of %s was published again after the restart" % got.topic
    with pytest.raises(Exception):
        again.expect_message(timeout=2)
