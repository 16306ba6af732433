"""MQTT steps the cluster tests share: persistent sessions and resuming them
on whichever node takes them, v5 reason codes over raw sockets (paho 1.6 drops
the PUBACK reason code), the "cluster serves" round trip, collecting retained
messages, and counting deliveries exactly: gather until what is expected
arrived, then end markers from every publisher (a publisher's messages reach a
subscriber in the order it sent them, so a copy too many still in flight
arrives before its marker)."""

import collections
import concurrent.futures
import queue
import time

import harness  # noqa: F401  (puts tests/integration on sys.path)
import rawmqtt as r
from clients import connect_props, uid

EXPIRY = 3600  # Session Expiry Interval of the tests' persistent v5 sessions
RECEIVE_TIMEOUT = 30.0  # for messages crossing nodes
# A client whose node was killed may wait ~7 s for its CONNACK elsewhere (the
# leader first releases the dead node's sessions): generous.
RESUME_TIMEOUT = 30.0


def session_props(expiry=EXPIRY):
    return connect_props(SessionExpiryInterval=expiry)


def persistent(clients, node, client_id=None, version=5, **kw):
    """A connected paho client with a persistent session: v5 clean_start false
    and a Session Expiry Interval, or 3.1.1 clean session 0. Returns
    (client, session present)."""
    if version == 5:
        c = clients(node, client_id=client_id, version=5)
        _, sp, _ = c.connect(clean_start=False, properties=session_props(), **kw)
    else:
        c = clients(node, client_id=client_id, version=version, clean=False)
        _, sp, _ = c.connect(**kw)
    return c, sp


def raw_v5(node, client_id=None, clean=True, expiry=None, timeout=5.0, expect=0):
    """A raw MQTT 5 connection; returns (RawClient, CONNACK), asserting the
    CONNACK reason when expect is not None."""
    props = {} if expiry is None else {"SessionExpiryInterval": expiry}
    c = r.RawClient(node.port, version=5, host=node.host, timeout=timeout)
    try:
        ack = c.connect(uid("raw") if client_id is None else client_id, expect_reason=expect, clean=clean,
                        props=props, timeout=timeout)
    except BaseException:
        c.close()
        raise
    return c, ack


# PUBACK reason codes that mean the publish was accepted: Success and No
# matching subscribers (MQTT 5.0, 3.4.2.1).
PUBACK_OK = (0x00, 0x10)


def granted(code):
    """SUBACK success codes are the granted QoS 0x00-0x02."""
    return code <= 2


def timed(fn, *args, **kw):
    """(fn's result, seconds it took)."""
    t = time.monotonic()
    out = fn(*args, **kw)
    return out, time.monotonic() - t


def retain(node, topic, payload, timeout=5.0):
    """Publishes one retained QoS 1 message over MQTT 5 and returns the PUBACK reason."""
    c, _ = raw_v5(node, timeout=timeout)
    try:
        return c.publish(topic, payload, qos=1, retain=True, pid=1, timeout=timeout).reason
    finally:
        c.disconnect()


def receive_topics(client, want, timeout=30.0):
    """Collects messages until every topic in want (topic -> payload) arrived;
    returns {topic: (payload, retain flag)} of everything received."""
    got = {}
    deadline = time.monotonic() + timeout
    while any(t not in got for t in want):
        left = deadline - time.monotonic()
        if left <= 0:
            missing = sorted(t for t in want if t not in got)
            raise AssertionError("%d of %d retained topics never arrived, e.g. %s" % (
                len(missing), len(want), missing[:10]))
        try:
            m = client.expect_message(timeout=left)
        except AssertionError:
            continue
        got[m.topic] = (m.payload, m.retain)
    wrong = {t: got[t] for t in want if got[t] != (want[t], True)}
    assert not wrong, "retained messages with the wrong payload or no retain flag: %s" % (
        dict(list(wrong.items())[:10]),)
    return got


def check_serving(clients, sub_node, pub_node, read_node, tag="serve"):
    """The cluster serves: a persistent subscription via sub_node, a retained
    QoS 1 publish via pub_node and a new subscriber on read_node that gets the
    retained message all succeed."""
    base = "%s/%s" % (tag, uid("s"))
    s, _ = persistent(clients, sub_node)
    assert s.subscribe(base + "/#", qos=1) == [1], "subscribe via %r refused" % sub_node
    s.disconnect()
    reason = retain(pub_node, base + "/x", b"served")
    assert reason in PUBACK_OK, "retained publish via %r: PUBACK 0x%02x" % (pub_node, reason)
    c = clients.connected(read_node)
    assert c.subscribe(base + "/#", qos=1) == [1], "subscribe via %r refused" % read_node
    receive_topics(c, {base + "/x": b"served"}, timeout=10)
    c.disconnect()
    return base


def assert_kept_out(clients, cluster, members, outsider, tag):
    """members (two nodes of cluster) serve without outsider, which learned
    no leader, refuses a CONNECT (0x88) while it runs, and holds none of
    their state. Returns check_serving's topic base."""
    a, b = members
    base = check_serving(clients, a, b, b, tag=tag)
    cluster.wait_caught_up(members)
    assert not outsider.leader_reports(), "%r learned a leader: %s" % (outsider, outsider.leader_reports())
    if outsider.running():
        conn, ack = raw_v5(outsider, uid("w"), expect=None, timeout=10)
        conn.close()
        assert ack.reason == 0x88, "%r accepted a CONNECT: %r" % (outsider, ack)
    p = harness.run_dump(outsider.data_dir)
    if p.returncode == 0:
        assert base.encode() not in p.stdout, "%r holds state it can only have got from the cluster" % outsider
    return base


def subscribed(client, filters, qos=1):
    """Subscribes client to each filter (str or (filter, qos or SubscribeOptions))."""
    for f in filters:
        f, q = f if isinstance(f, tuple) else (f, qos)
        want = q.QoS if hasattr(q, "QoS") else q
        kw = {"options": q} if hasattr(q, "QoS") else {"qos": q}
        assert client.subscribe(f, **kw) == [want], "%s: SUBSCRIBE %r refused" % (client.client_id, f)
    return client


def resume(clients, nodes, client_id, version=5, timeout=RESUME_TIMEOUT):
    """Reconnects client_id to its persistent session (v5 clean_start false and
    a Session Expiry Interval, or 3.1.1 clean session 0) on the first of nodes
    that accepts it, trying them in turn until timeout; a refused, unanswered
    or dead node is tried again later. Returns (client, session present, node)."""
    deadline = time.monotonic() + timeout
    attempts = []
    while True:
        for node in nodes:
            left = deadline - time.monotonic()
            c = clients(node, client_id=client_id, version=version, clean=False)
            try:
                if version == 5:
                    rc, sp, _ = c.connect(clean_start=False, properties=session_props(), expect_rc=None,
                                          timeout=max(1.0, left))
                else:
                    rc, sp, _ = c.connect(expect_rc=None, timeout=max(1.0, left))
            except (OSError, AssertionError) as e:
                rc, sp = repr(e), False
            if rc == 0:
                return c, sp, node
            c.close()
            attempts.append("node %d: %s" % (node.id, rc))
        if time.monotonic() >= deadline:
            raise AssertionError("%s could not resume its session on nodes %s within %.0f s: %s" % (
                client_id, [n.id for n in nodes], timeout, attempts[-6:]))
        time.sleep(0.1)


def gather(client, until, timeout=RECEIVE_TIMEOUT, what="the expected messages"):
    """The messages client receives, in order, until until(messages so far)
    is true (checked after each one)."""
    got = []
    deadline = time.monotonic() + timeout
    while not until(got):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("%s: %s did not arrive within %.0f s; it got %d: %s" % (
                client.client_id, what() if callable(what) else what, timeout, len(got), [(m.topic, m.payload[:30]) for m in got[:20]]))
        try:
            got.append(client.messages.get(timeout=min(left, 0.2)))
        except queue.Empty:
            pass
    return got


def gather_payloads(client, want, timeout=RECEIVE_TIMEOUT):
    """gather() until every payload in want arrived at least once."""
    missing = set(want)

    def done(got):
        if got:
            missing.discard(got[-1].payload)
        return not missing
    return gather(client, done, timeout, lambda: "%d of %d payloads (e.g. %s)" % (
        len(missing), len(set(want)), sorted(missing)[:5]))


def end_markers(subs, pubs, topic, timeout=RECEIVE_TIMEOUT):
    """Each of pubs publishes one QoS 1 marker to topic, which every one of
    subs is subscribed to; returns, per subscriber, the other messages it
    received before it had every marker."""
    marks = {("end %s" % p.client_id).encode() for p in pubs}
    for p in pubs:
        p.publish(topic, ("end %s" % p.client_id).encode(), qos=1)
    late = []
    for s in subs:
        got = gather(s, lambda got: marks <= {m.payload for m in got if m.topic == topic}, timeout,
                     "the end markers on %r" % topic)
        late.append([m for m in got if m.topic != topic])
    return late


def exactly(msgs, want, who, key=lambda m: m.payload):
    """Asserts that key(message) of msgs is, as a multiset, want: nothing
    missing, nothing twice, nothing else."""
    have, want = collections.Counter(key(m) for m in msgs), collections.Counter(want)
    missing, extra = want - have, have - want
    assert not missing and not extra, "%s: %d missing (e.g. %s), %d too many or unexpected (e.g. %s)" % (
        who, sum(missing.values()), sorted(missing)[:5], sum(extra.values()), sorted(extra.items())[:5])


def read_publishes(conn, ends, timeout=RECEIVE_TIMEOUT):
    """The PUBLISH packets a raw connection receives, in order, until one with
    each payload of ends arrived (included), completing each QoS flow as a
    client does (PUBACK; PUBREC, then PUBCOMP for the PUBREL). What is on the
    wire, unlike paho, which hands a QoS 2 message up at its PUBREL."""
    got, missing = [], set(ends)
    deadline = time.monotonic() + timeout
    while missing:
        try:
            p = conn.recv(timeout=max(0.001, deadline - time.monotonic()))
        except (r.Timeout, r.Closed) as e:
            raise AssertionError("%r after %d PUBLISH packets, before %s: last %s" % (
                e, len(got), sorted(missing)[:5], got[-3:]))
        if p.type == r.PUBLISH:
            got.append(p)
            missing.discard(p.payload)
            if p.qos:
                conn.send(r.ack_packet(r.PUBACK if p.qos == 1 else r.PUBREC, p.pid, conn.version))
        elif p.type == r.PUBREL:
            conn.send(r.ack_packet(r.PUBCOMP, p.pid, conn.version))
        else:
            raise AssertionError("unexpected %r after %d PUBLISH packets, before %s: last %s" % (
                p, len(got), sorted(missing)[:5], got[-3:]))
    return got


def publish_flow(conn, topic, payloads, qos=2, window=64, timeout=RECEIVE_TIMEOUT):
    """Publishes payloads in order on a raw connection, up to window of them
    unacknowledged, completing each QoS 1/2 flow; returns once every one was
    acknowledged with a reason below 0x80. One thread does all the writing,
    so the order on the wire is the order given (paho's publish() from
    another thread than its network loop may swap packets)."""
    pending, pids = {}, iter(range(1, 65536))
    queue_ = list(payloads)
    queue_.reverse()
    deadline = time.monotonic() + timeout
    while queue_ or pending:
        while queue_ and len(pending) < window:
            pid = next(pids)
            pending[pid] = queue_.pop()
            conn.send(r.publish(topic, pending[pid], qos=qos, pid=pid, version=conn.version))
        try:
            p = conn.recv(timeout=max(0.001, deadline - time.monotonic()))
        except (r.Timeout, r.Closed) as e:
            raise AssertionError("%r with %d publishes unacknowledged (e.g. %s) and %d not sent" % (
                e, len(pending), list(pending.values())[:3], len(queue_)))
        assert p.reason < 0x80 and p.pid in pending, "publishing to %r: %r" % (topic, p)
        if p.type == r.PUBREC and qos == 2:
            conn.send(r.ack(r.PUBREL, p.pid, version=conn.version))
        elif p.type == (r.PUBACK if qos == 1 else r.PUBCOMP):
            del pending[p.pid]
        else:
            raise AssertionError("publishing to %r: unexpected %r" % (topic, p))


def in_background(fn, *args, **kw):
    """Starts fn(*args, **kw) on a thread; returns a future (result() re-raises)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn, *args, **kw)
    pool.shutdown(wait=False)
    return future
