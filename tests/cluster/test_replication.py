"""Replicated state on a formed three-node cluster: a subscription made on one
node and a retained message set on another are on every node (in --dump and
for a new subscriber on the third), and after a mixed workload on all three
nodes the three LMDB states are identical and hold exactly what the workload
left behind."""

from clients import opts, pub_props, sub_props, uid, will_props

from cluster_mqtt import PUBACK_OK, EXPIRY, persistent, retain


def sub_key(client, topic_filter):
    return client.client_id.encode(), topic_filter.encode()


def test_subscription_and_retained_message_reach_every_node(cluster, clients):
    n1, n2, n3 = cluster.nodes
    base = "t1/" + uid("r")
    a, sp = persistent(clients, n1)
    assert not sp
    assert a.subscribe(base + "/+", qos=1) == [1]
    b, _ = persistent(clients, n1, version=4)
    assert b.subscribe(base + "/#", qos=2) == [2]
    assert retain(n2, base + "/x", b"from node 2") in PUBACK_OK

    want_subs = {sub_key(a, base + "/+"): "1", sub_key(b, base + "/#"): "2"}

    def problems(d):
        out = []
        for key, qos in want_subs.items():
            if key not in d.subs:
                out.append("no sub %r" % (key,))
            elif d.subs[key]["qos"] != qos:
                out.append("sub %r has qos %s, not %s" % (key, d.subs[key]["qos"], qos))
        for c in (a, b):
            if c.client_id.encode() not in d.sessions:
                out.append("no session %r" % c.client_id)
        if d.payload(base + "/x") != b"from node 2":
            out.append("retained %r is %r" % (base + "/x", d.payload(base + "/x")))
        elif d.retained[(base + "/x").encode()]["qos"] != "1":
            out.append("retained qos %s" % d.retained[(base + "/x").encode()]["qos"])
        return "; ".join(out)

    cluster.wait_dumps(problems, nodes=cluster.nodes)

    c = clients.connected(n3)
    assert c.subscribe(base + "/#", qos=1) == [1]
    m = c.expect_message(timeout=5)
    assert (m.topic, m.payload, m.retain) == (base + "/x", b"from node 2", True)


class Workload:
    """The mixed workload of test_identical_states_after_mixed_workload and
    what it must leave in every node's state: subs {(client id, filter):
    options}, sessions {client id: fields} and retained {topic: payload}."""

    def __init__(self, cluster, clients):
        self.cluster = cluster
        self.n1, self.n2, self.n3 = cluster.nodes
        self.clients = clients
        self.base = "t2/" + uid("w")
        self.subs, self.sessions, self.retained = {}, {}, {}

    def t(self, suffix):
        return self.base + "/" + suffix

    def subscribe(self, c, topic_filter, qos, options=None, sub_id=0, nl=0, rap=0, rh=0):
        props = sub_props(SubscriptionIdentifier=sub_id) if sub_id else None
        if options is not None:
            codes = c.subscribe(topic_filter, options=options, properties=props)
        else:
            codes = c.subscribe(topic_filter, qos=qos, properties=props)
        assert codes == [qos], "%s: SUBACK %s for %r" % (c.client_id, codes, topic_filter)
        self.subs[sub_key(c, topic_filter)] = {"qos": str(qos), "no_local": str(nl), "rap": str(rap),
                                               "rh": str(rh), "sub_id": str(sub_id)}

    def unsubscribe(self, c, topic_filter):
        codes = c.unsubscribe(topic_filter)
        assert not codes or codes == [0], "%s: UNSUBACK %s" % (c.client_id, codes)
        del self.subs[sub_key(c, topic_filter)]

    def retain(self, c, suffix, payload, qos=1, **kw):
        c.publish(self.t(suffix), payload, qos=qos, retain=True, **kw)
        if payload:
            self.retained[self.t(suffix).encode()] = (payload, str(qos))
        else:
            self.retained.pop(self.t(suffix).encode(), None)

    def run(self):
        cl, n1, n2, n3 = self.clients, self.n1, self.n2, self.n3
        will_a = {"topic": self.t("will/a"), "payload": b"\x00A", "qos": 1, "retain": False,
                  "properties": will_props(WillDelayInterval=30)}
        a, _ = persistent(cl, n1, will=will_a)
        b, _ = persistent(cl, n1, version=4, will={"topic": self.t("will/b"), "payload": b"B", "qos": 0,
                                                   "retain": True})
        c, _ = persistent(cl, n2)
        d = cl.connected(n2)                                  # v5, clean start, no expiry
        e = cl.connected(n3, version=4)                       # 3.1.1 clean session
        f, _ = persistent(cl, n3, will={"topic": self.t("will/f"), "payload": b"F went away",
                                        "qos": 1, "retain": True})

        self.subscribe(a, self.t("a/#"), 1, sub_id=5)
        self.subscribe(a, self.t("+/x"), 1, options=opts(1, no_local=True, retain_as_published=True,
                                                         retain_handling=1), nl=1, rap=1, rh=1)
        self.subscribe(b, self.t("b/1"), 0)
        self.subscribe(b, self.t("b/2"), 2)
        self.subscribe(c, "$share/g/" + self.t("shared/#"), 1)
        self.subscribe(c, self.t("c"), 2)
        self.subscribe(d, self.t("d"), 0)
        self.subscribe(e, self.t("e/#"), 1)
        self.subscribe(f, self.t("f"), 1)
        self.subscribe(f, self.t("f2"), 0)

        self.retain(a, "r/1", b"one")
        self.retain(c, "r/2", b"two", properties=pub_props(ContentType="text/plain",
                                                          UserProperty=[("k", "v")]))
        self.retain(c, "r/3", b"three")
        self.retain(e, "r/4", bytes(range(256)))
        self.retain(d, "r/5", b"five", qos=0)
        # QoS 0 has no acknowledgement: wait until it is applied before the
        # clear below, or the two could commit in either order.
        self.cluster.wait_dumps(lambda dump: "" if dump.payload(self.t("r/5")) == b"five" else "r/5 not set",
                                nodes=[n2])
        self.retain(f, 'r/sp ace"q\\', b"odd topic")

        self.unsubscribe(b, self.t("b/1"))
        self.unsubscribe(c, self.t("c"))
        self.unsubscribe(f, self.t("f2"))
        self.retain(b, "r/1", b"uno", qos=0)                  # replace, from the same node
        self.retain(f, "r/3", b"")                            # clear, from another node
        self.retain(a, "r/5", b"", qos=1)                     # clear a QoS 0 one, from a third node
        self.subscribe(e, self.t("e2"), 2)
        self.unsubscribe(e, self.t("e2"))

        b.disconnect()          # persistent session stays, will discarded
        c.disconnect()
        e.disconnect()          # clean session: gone with its subscriptions
        f.drop()                # abnormal: the retained will is published
        for key in list(self.subs):
            if key[0] == e.client_id.encode():
                del self.subs[key]
        self.retained[self.t("will/f").encode()] = (b"F went away", "1")
        # a and d stay connected; a's will (delay 30 s) is part of its session.
        self.sessions = {
            a.client_id.encode(): {"owner": "1", "connected": "1", "expiry": str(EXPIRY),
                                   "will": self.t("will/a").encode(), "will_qos": "1", "will_retain": "0",
                                   "will_delay": "30", "will_payload": "0041"},
            b.client_id.encode(): {"owner": "1", "connected": "0"},
            c.client_id.encode(): {"owner": "2", "connected": "0", "expiry": str(EXPIRY)},
            d.client_id.encode(): {"owner": "2", "connected": "1", "expiry": "0"},
            f.client_id.encode(): {"owner": "3", "connected": "0", "expiry": str(EXPIRY)},
        }
        self.gone = [e.client_id.encode()]
        self.props_topic = self.t("r/2").encode()

    def problems(self, dump):
        """'' when dump holds exactly the workload's result, else what differs."""
        out = []
        prefix = self.base.encode()
        subs = {k: v for k, v in dump.subs.items() if prefix in k[1]}
        if subs != self.subs:
            missing = {k: v for k, v in self.subs.items() if subs.get(k) != v}
            extra = {k: v for k, v in subs.items() if self.subs.get(k) != v}
            out.append("subs: expected but not found %s; found but not expected %s" % (missing, extra))
        retained = {k: (bytes.fromhex(v["payload"]), v["qos"]) for k, v in dump.retained.items()
                    if k.startswith(prefix)}
        if retained != self.retained:
            out.append("retained: expected %s, found %s" % (
                {k: v for k, v in self.retained.items() if retained.get(k) != v},
                {k: v for k, v in retained.items() if self.retained.get(k) != v}))
        elif not dump.retained[self.props_topic]["props"]:
            out.append("retained %r lost its properties" % self.props_topic)
        for cid, want in self.sessions.items():
            have = dump.sessions.get(cid)
            if have is None:
                out.append("no session %r" % cid)
                continue
            wrong = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            if wrong:
                out.append("session %r: field (found, expected) %s" % (cid, wrong))
        out += ["session %r should be gone" % cid for cid in self.gone if cid in dump.sessions]
        return "; ".join(out)


def test_identical_states_after_mixed_workload(cluster, clients):
    w = Workload(cluster, clients)
    w.run()
    cluster.wait_dumps(w.problems, nodes=cluster.nodes)
    dumps = cluster.wait_caught_up(cluster.nodes)
    assert not w.problems(dumps[0])
