"""The cluster data path: a publish on any node reaches every matching
subscriber on every node exactly once, with the semantics of one node.

Subscribers and publishers are real clients (paho MQTT 5 and 3.1.1,
mosquitto_sub / mosquitto_pub, raw sockets where timing or packet fields
matter) spread over the three nodes. Before publishing, a test waits until
every node applied the subscriptions (identical --dump states): the route
table is derived from the replicated subscriptions. Counts are exact: a test
gathers until everything expected arrived, then every publisher sends an end
marker, and what arrived before the markers must be exactly what was
published (a copy too many fails the test as surely as a missing one).

Covered: QoS 0/1/2 both protocol versions; wildcards + and # matched on the
receiving side; $-topics not matched by leading wildcards; No Local; Subscription
Identifiers, and overlapping subscriptions of one remote session giving one
copy with all of them; 500 QoS 2 messages counted exactly on the wire, also
across a peer link broken by TCP resets in the middle; the publisher's PUBACK withheld while
the subscriber's node is stopped; a shared subscription group with members on
all nodes; retained messages and an offline queue across nodes.
"""

import pytest

import harness
import rawmqtt as r
from clients import opts, sub_props, uid
from test_clients_cli import LiveSub, pub as mosquitto_pub

from cluster_mqtt import (PUBACK_OK, RECEIVE_TIMEOUT, end_markers, exactly, gather, gather_payloads, in_background,
                          persistent, publish_flow, raw_v5, read_publishes, receive_topics, retain, subscribed)
from harness import Partition, links, wait_for

MANY = 5000 if harness.LONG else 500   # QoS 2 messages counted exactly
SHARED = 300 if harness.LONG else 90   # messages through the shared group
STOPPED = 1.5                          # the subscriber's node stays SIGSTOPped this long
# A subscriber reading more slowly than the publishers send must not lose
# messages to a full queue (max_queued, drop_new by default).
UNQUEUED = {"max_queued": 0}


@pytest.mark.parametrize("version", [5, 4])
def test_publish_from_any_node_reaches_every_subscriber_once(cluster, clients, version):
    base = "fw1/" + uid("a")
    subs = [subscribed(clients.connected(n, version=version), [base + "/#"], qos=2) for n in cluster]
    pubs = [clients.connected(n, version=version) for n in cluster]
    cluster.wait_caught_up()
    want = []
    for p, n in zip(pubs, cluster):
        for qos in (0, 1, 2):
            for k in range(3):
                payload = ("%d/%d/%d" % (n.id, qos, k)).encode()
                p.publish("%s/%d/q%d" % (base, n.id, qos), payload, qos=qos)
                want.append(payload)
    got = [gather_payloads(s, want) for s in subs]
    late = end_markers(subs, pubs, base + "/end")
    for s, n, msgs, more in zip(subs, cluster, got, late):
        exactly(msgs + more, want, "subscriber on node %d" % n.id)
        for m in msgs:
            src, qos, _ = m.payload.decode().split("/")
            assert (m.topic, m.qos) == ("%s/%s/q%s" % (base, src, qos), int(qos)), (
                "subscriber on node %d: %r (from node %s at QoS %s)" % (n.id, m, src, qos))


def test_mosquitto_clients_across_nodes(cluster, clients):
    n1, n2, n3 = cluster.nodes
    base = "fw2/" + uid("m")
    subs = {n3: LiveSub(n3, ["-q", "2", "-t", base + "/#"], version=5, fmt="%t|%q|%p"),
            n1: LiveSub(n1, ["-q", "2", "-t", base + "/#"], version=4, fmt="%t|%q|%p")}
    try:
        for s in subs.values():
            for via in cluster:
                s.wait_ready(clients, via=via)
        sent = [(n2, 5, 1), (n1, 4, 2), (n3, 5, 2), (n2, 4, 0)]
        want = set()
        for node, version, qos in sent:
            topic = "%s/%d/v%d" % (base, node.id, version)
            mosquitto_pub(node, "-q", str(qos), "-t", topic, "-m", "via node %d" % node.id, version=version)
            want.add(("%s|%d|via node %d" % (topic, qos, node.id)).encode())
        lines = {node: [] for node in subs}
        for node, s in subs.items():
            while not want <= set(lines[node]):
                lines[node].append(s.line(timeout=RECEIVE_TIMEOUT))
        for node in cluster:
            mosquitto_pub(node, "-q", "1", "-t", base + "/end", "-m", "end %d" % node.id)
        for node, s in subs.items():
            ends = set()
            while len(ends) < 3:
                line = s.line(timeout=RECEIVE_TIMEOUT)
                (ends.add if line.startswith((base + "/end|").encode()) else lines[node].append)(line)
            assert sorted(lines[node]) == sorted(want), "mosquitto_sub on node %d printed %s" % (node.id, lines[node])
    finally:
        for s in subs.values():
            s.stop()


def test_wildcards_matched_across_nodes(cluster, clients):
    n1, n2, n3 = cluster.nodes
    base, other, end = uid("w"), uid("o"), uid("e")
    filters = {"a": (n1, base + "/+/x", 5), "b": (n2, base + "/#", 5), "c": (n3, "+/a/+", 4),
               "d": (n3, base + "/+", 5), "e": (n1, "#", 4)}
    subs = {k: subscribed(clients.connected(node, version=v), [f, end]) for k, (node, f, v) in filters.items()}
    # topic -> the subscribers it matches ([MQTT-4.7.1-2]: # includes the parent level; + matches an empty level)
    topics = {
        base + "/a/x": "abce", base + "/b/x": "abe", base + "/a/y": "bce", base + "/a/x/z": "be",
        base: "be", base + "/": "bde", base + "/q": "bde", other + "/a/x": "ce", other + "/b/x": "e",
    }
    pubs = [clients.connected(n) for n in cluster]
    cluster.wait_caught_up()
    for i, topic in enumerate(topics):
        pubs[i % 3].publish(topic, topic.encode(), qos=1)
    want = {k: [t.encode() for t, who in topics.items() if k in who] for k in subs}
    got = [gather_payloads(subs[k], want[k]) for k in subs]
    for k, msgs, more in zip(subs, got, end_markers(subs.values(), pubs, end)):
        exactly(msgs + more, want[k], "%r on node %d" % (filters[k][1], filters[k][0].id))


def test_dollar_topics_not_matched_by_leading_wildcards_across_nodes(cluster, clients):
    # [MQTT-4.7.2-1]: filters starting with # or + do not match $ topics, on
    # whichever node the subscriber is.
    n1, n2, n3 = cluster.nodes
    # (the cluster is the test's own: "$test" needs no unique part, and the
    # ACL of the suites' authentication mode grants it, authmode.py)
    dollar, end = "$test", uid("end")
    wild = [subscribed(clients.connected(n), ["#"]) for n in (n1, n2, n3)]
    plus = [subscribed(clients.connected(n), ["+/x", "+/+", end]) for n in (n2, n3)]
    exact = subscribed(clients.connected(n3), [dollar + "/x", dollar + "/#", end])
    pubs = [clients.connected(n) for n in (n1, n2)]
    cluster.wait_caught_up()
    want = [("dollar " + p.client_id).encode() for p in pubs]
    for p, payload in zip(pubs, want):
        p.publish(dollar + "/x", payload, qos=1)
    got = gather_payloads(exact, want)
    *late, more = end_markers(wild + plus + [exact], pubs, end)
    for s, msgs in zip(wild + plus, late):
        assert msgs == [], "%s got $ topics through a leading wildcard: %s" % (s.client_id, msgs)
    # one copy for the two overlapping filters
    exactly(got + more, want, "the subscriber to %s/x and %s/#" % (dollar, dollar))
    assert all(m.topic == dollar + "/x" for m in got), got


def test_no_local_across_nodes(cluster, clients):
    n1, n2, n3 = cluster.nodes
    base = "fw4/" + uid("nl")
    nl = opts(1, no_local=True)
    a = subscribed(clients.connected(n1), [(base + "/t", nl), base + "/end"])
    b = subscribed(clients.connected(n2), [(base + "/t", nl), base + "/end"])
    c = subscribed(clients.connected(n3, version=4), [base + "/t", base + "/end"])
    cluster.wait_caught_up()
    a.publish(base + "/t", b"from a", qos=1)
    b.publish(base + "/t", b"from b", qos=2)
    got_c = gather_payloads(c, [b"from a", b"from b"])
    got_a = gather_payloads(a, [b"from b"])
    got_b = gather_payloads(b, [b"from a"])
    late = end_markers([a, b, c], [a, b], base + "/end")
    exactly(got_a + late[0], [b"from b"], "a (No Local, node 1)")
    exactly(got_b + late[1], [b"from a"], "b (No Local, node 2)")
    exactly(got_c + late[2], [b"from a", b"from b"], "c (node 3)")


def test_subscription_identifiers_on_a_remote_node(cluster, clients):
    # v5 3.3.4 [MQTT-3.3.4-3/4]: the PUBLISH carries the identifiers of the
    # matching subscriptions; overlapping ones give one copy (as on one node) at
    # the highest granted QoS, with all their identifiers.
    n1, n2, n3 = cluster.nodes
    base = "fw5/" + uid("sid")
    s = clients.connected(n2)
    assert s.subscribe(base + "/a/#", qos=1, properties=sub_props(SubscriptionIdentifier=7)) == [1]
    assert s.subscribe(base + "/+/x", qos=2, properties=sub_props(SubscriptionIdentifier=268435455)) == [2]
    assert s.subscribe(base + "/none", qos=0) == [0]
    assert s.subscribe(base + "/end", qos=1) == [1]
    pubs = [clients.connected(n1), clients.connected(n3, version=4)]
    cluster.wait_caught_up()
    cases = {"a/x": (2, [7, 268435455], 2), "a/y": (1, [7], 1), "b/x": (2, [268435455], 2), "none": (1, [], 0)}
    want = []
    for p in pubs:
        for suffix, (qos, _, _) in cases.items():
            payload = ("%s %s" % (suffix, p.client_id)).encode()
            p.publish(base + "/" + suffix, payload, qos=qos)
            want.append(payload)
    got = gather_payloads(s, want)
    got += end_markers([s], pubs, base + "/end")[0]
    exactly(got, want, "the subscriber on node 2 (one copy per publish)")
    for m in got:
        _, ids, qos = cases[m.topic[len(base) + 1:]]
        assert sorted(m.props.get("SubscriptionIdentifier", [])) == ids and m.qos == qos, (
            "%r: expected subscription identifiers %s at QoS %d" % (m, ids, qos))


def test_qos2_exactly_once_across_nodes(start_cluster, raw):
    # Counted on the wire (a raw subscriber): every PUBLISH once, none a
    # duplicate, each publisher's in order ([MQTT-4.6.0-5]).
    cluster = start_cluster(settings=UNQUEUED)
    n1, n2, n3 = cluster.nodes
    base = "fw6/" + uid("q2")
    s, _ = raw_v5(n2)
    assert s.subscribe(1, [(base + "/#", 2)]).codes == [2]
    pubs = {"v5 on node 1": raw(n1, version=5), "3.1.1 on node 3": raw(n3, version=4)}
    for name, p in pubs.items():
        p.connect(uid("q2pub"))
    cluster.wait_caught_up()
    want = {name: [("%s %d" % (name, i)).encode() for i in range(MANY // 2)] for name in pubs}
    ends = [("end " + name).encode() for name in pubs]
    reader = in_background(read_publishes, s, ends, timeout=120)
    flows = [in_background(publish_flow, p, base + "/t", want[name] + [end], timeout=120)
             for (name, p), end in zip(pubs.items(), ends)]
    for f in flows:
        f.result(timeout=150)
    got = [p for p in reader.result(timeout=150) if p.payload not in ends]
    exactly(got, [w for name in pubs for w in want[name]], "QoS 2 subscriber on node 2")
    assert all(p.qos == 2 and not p.dup for p in got), [p for p in got if p.qos != 2 or p.dup][:5]
    for name in pubs:
        mine = set(want[name])
        assert [m.payload for m in got if m.payload in mine] == want[name], "publisher %s: out of order" % name


def test_qos2_exactly_once_when_the_peer_link_breaks(start_cluster, request):
    # The links between the publisher's node and the subscriber's are reset
    # (iptables REJECT with TCP resets) while QoS 2 forwards are in flight; the
    # node redials and resends what was not acknowledged, and the subscriber
    # gets every message once, in order, on the wire.
    cluster = start_cluster(settings=UNQUEUED)
    n1, n2, n3 = cluster.nodes
    base = "fw7/" + uid("lk")
    s, _ = raw_v5(n2)
    assert s.subscribe(1, [(base + "/#", 2)]).codes == [2]
    p, _ = raw_v5(n1)
    cluster.wait_caught_up()
    want = [("m %d" % i).encode() for i in range(MANY)]
    half = len(want) // 2
    reader = in_background(read_publishes, s, [b"end"], timeout=120)
    publish_flow(p, base + "/t", want[:half])
    before = links(n1, n2)
    assert before, "no connection between the cluster ports of nodes 1 and 2"
    cut = Partition(n1, [n2], reset=True)
    request.addfinalizer(cut.heal)
    cut.cut()
    rest = in_background(publish_flow, p, base + "/t", want[half:] + [b"end"], timeout=60)
    # The links that carried traffic break: the first packet after the cut gets a reset.
    wait_for(lambda: not before <= links(n1, n2), 10, lambda: "links between nodes 1 and 2 never broke: %s" % (
        links(n1, n2),))
    cut.heal()
    rest.result(timeout=90)
    got = reader.result(timeout=150)[:-1]
    exactly(got, want, "QoS 2 subscriber on node 2 after the link broke")
    assert [m.payload for m in got] == want, "out of order after the resend: %s" % (
        [(i, m.payload) for i, m in enumerate(got) if m.payload != want[i]][:5])
    assert not [m for m in got if m.dup], "DUP set on a first delivery: %s" % [m for m in got if m.dup][:5]


def test_puback_only_after_the_remote_node_accepted(cluster, clients):
    leader, _ = cluster.wait_leader()
    sub_node, pub_node = cluster.followers(leader)
    base = "fw8/" + uid("ack")
    s = subscribed(clients.connected(sub_node), [base + "/#"], qos=1)
    p, _ = raw_v5(pub_node)
    cluster.wait_caught_up()
    assert p.publish(base + "/warm", b"warm", qos=1, pid=1, timeout=RECEIVE_TIMEOUT).reason == 0
    gather_payloads(s, [b"warm"])
    sub_node.pause()
    try:
        p.send(r.publish(base + "/t", b"while stopped", qos=1, pid=2, version=5))
        early = p.recv(timeout=STOPPED)
    except r.Timeout:
        early = None
    finally:
        sub_node.resume()
    assert early is None, "%r arrived while node %d, the subscriber's, was stopped" % (early, sub_node.id)
    ack = p.expect(r.PUBACK, timeout=RECEIVE_TIMEOUT)
    assert (ack.pid, ack.reason) == (2, 0x00), "PUBACK after the node resumed: %r" % ack
    got = gather_payloads(s, [b"while stopped"])
    p.publish(base + "/end", b"end", qos=1, pid=3, timeout=RECEIVE_TIMEOUT)
    got += gather(s, lambda got: any(m.payload == b"end" for m in got))
    exactly([m for m in got if m.payload != b"end"], [b"while stopped"], "subscriber on the stopped node")


def test_shared_group_with_members_on_every_node(cluster, clients):
    n1, n2, n3 = cluster.nodes
    base = "fw9/" + uid("sh")
    group = "$share/g/" + base + "/#"
    members = [subscribed(clients.connected(n, version=v), [group, "end/" + base])
               for n, v in ((n1, 5), (n2, 5), (n3, 4), (n1, 5))]
    pubs = [clients.connected(n) for n in cluster]
    cluster.wait_caught_up()
    want = []
    for i in range(SHARED):
        payload = ("s %d" % i).encode()
        pubs[i % 3].publish("%s/%d" % (base, i % 7), payload, qos=1)
        want.append(payload)
    got = [[] for _ in members]
    missing = set(want)

    def all_in():
        for k, m in enumerate(members):
            got[k] += drain(m)
            missing.difference_update(x.payload for x in got[k])
        return not missing
    wait_for(all_in, RECEIVE_TIMEOUT, lambda: "%d of %d shared messages never arrived (e.g. %s)" % (
        len(missing), len(want), sorted(missing)[:5]))
    for k, more in enumerate(end_markers(members, pubs, "end/" + base)):
        got[k] += more
    exactly([m for g in got for m in g], want, "the group (each message to exactly one member)")
    counts = [len(g) for g in got]
    assert min(counts) >= SHARED // (4 * len(members)), "unbalanced: members got %s of %d" % (counts, SHARED)


def drain(client):
    """The messages already in client's queue."""
    out = []
    while not client.messages.empty():
        out.append(client.messages.get())
    return out


def test_retained_message_crosses_nodes(cluster, clients):
    n1, n2, n3 = cluster.nodes
    base = "fw10/" + uid("ret")
    live = subscribed(clients.connected(n3), [base + "/#"])
    kept = subscribed(clients.connected(n2), [(base + "/#", opts(1, retain_as_published=True))])
    cluster.wait_caught_up()
    assert retain(n1, base + "/x", b"kept") in PUBACK_OK
    # already subscribed: forwarded live, retain flag 0 unless Retain As Published
    m = gather_payloads(live, [b"kept"])[-1]
    assert (m.topic, m.retain) == (base + "/x", False), m
    m = gather_payloads(kept, [b"kept"])[-1]
    assert (m.topic, m.retain) == (base + "/x", True), m
    # a new subscriber on another node gets the retained copy
    for version in (5, 4):
        c = subscribed(clients.connected(n3, version=version), [base + "/#"])
        receive_topics(c, {base + "/x": b"kept"}, timeout=RECEIVE_TIMEOUT)
        c.disconnect()
    # cleared on node 2: a new subscriber on node 3 gets nothing
    assert retain(n2, base + "/x", b"") in PUBACK_OK
    cluster.wait_caught_up()
    c = subscribed(clients.connected(n3), [base + "/#"])
    pub = clients.connected(n1)
    more = end_markers([c], [pub], base + "/end")[0]
    assert more == [], "retained message still delivered after it was cleared: %s" % more


def test_offline_queue_on_another_node(cluster, clients):
    # A persistent session subscribed on node 2 is offline while node 1 and
    # node 3 publish; reconnecting to node 2 it gets what was queued.
    n1, n2, n3 = cluster.nodes
    base = "fw11/" + uid("q")
    sessions = []
    for version in (5, 4):
        s, sp = persistent(clients, n2, version=version)
        assert not sp
        subscribed(s, [base + "/#"], qos=2)
        sessions.append((s, version))
    pubs = [clients.connected(n1), clients.connected(n3, version=4)]
    cluster.wait_caught_up()
    for s, _ in sessions:
        s.disconnect()
    want = []
    for i in range(10):
        payload = ("queued %d" % i).encode()
        pubs[i % 2].publish(base + "/t", payload, qos=1 + i % 2)
        want.append(payload)
    resumed = []
    for s, version in sessions:
        c, sp = persistent(clients, n2, client_id=s.client_id, version=version)
        assert sp, "%s: no session present on node 2" % s.client_id
        resumed.append(c)
    got = [gather_payloads(c, want) for c in resumed]
    for c, msgs, more in zip(resumed, got, end_markers(resumed, pubs, base + "/end")):
        exactly(msgs + more, want, "%s (v%d) after reconnecting" % (c.client_id, c.version))
