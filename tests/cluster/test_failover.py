"""kill -9 of the leader in the middle of a stream of subscribes and retained
publishes loses none that were acknowledged.

Several MQTT 5 clients spread over the three nodes (persistent sessions) each
keep a window of operations in flight: SUBSCRIBE of a distinct filter at QoS 1
(SUBACK 0x00-0x02 = acknowledged) and a retained QoS 1 PUBLISH to a distinct
topic (PUBACK 0x00 or 0x10 = acknowledged). In the middle the leader (from the
logs) gets SIGKILL; its clients reconnect to another node with the same client
id and clean_start false and go on. An operation that got an error, or no
answer because its connection died, is indeterminate and not checked.

Default: 5,000 operations, one kill. STARLING_LONG=1: 50,000 operations and a
kill of whichever node leads at 20, 40, 60 and 80 % (each killed node restarts
before the next kill).
"""

import threading
import time

import harness
import rawmqtt as r
from clients import uid

from cluster_mqtt import PUBACK_OK, EXPIRY, check_serving, granted, persistent, receive_topics

OPS = 50000 if harness.LONG else 5000
KILL_AT = (0.2, 0.4, 0.6, 0.8) if harness.LONG else (0.5,)
WORKERS = 6          # two per node
WINDOW = 8           # operations in flight per client
OP_TIMEOUT = 10.0    # an operation without an answer for this long: reconnect
RECONNECT_TIMEOUT = 30.0


class Progress:
    """Operations finished so far (answered, or lost with their connection), across all streams."""

    def __init__(self):
        self.done = 0
        self.cond = threading.Condition()

    def add(self):
        with self.cond:
            self.done += 1
            self.cond.notify_all()

    def wait(self, n, timeout, streams):
        with self.cond:
            ok = self.cond.wait_for(lambda: self.done >= n or not any(s.is_alive() for s in streams), timeout)
        assert ok and self.done >= n, "only %d of %d operations finished in %.0f s" % (self.done, n, timeout)


class OpStream(threading.Thread):
    """One MQTT 5 client working through its operations with WINDOW in flight.

    acked_subs / acked_retained: what the cluster acknowledged as done;
    refused: answers >= 0x80; indeterminate: sent, then the connection died;
    reconnects: (node id, session present) of every reconnection;
    error: what stopped the stream, if anything did."""

    def __init__(self, cluster, home, index, prefix, ops, progress, stop):
        super().__init__(name="opstream-%d" % index, daemon=True)
        self.cluster = cluster
        self.node = home
        self.client_id = "%s-w%d" % (prefix, index)
        self.ops = ops
        self.progress = progress
        self.stop = stop
        self.acked_subs, self.acked_retained = set(), {}
        self.acked_after_kill = 0
        self.kill_count = 0      # set by the test: kills so far
        self.refused = self.indeterminate = 0
        self.reconnects = []
        self.error = None
        self.conn = None
        self.next_pid = 0

    # -- connection ---------------------------------------------------------

    def _connect(self, node, clean):
        c = r.RawClient(node.port, version=5, host=node.host, timeout=5)
        try:
            ack = c.connect(self.client_id, expect_reason=None, clean=clean,
                            props={"SessionExpiryInterval": EXPIRY}, timeout=10)
        except BaseException:
            c.close()
            raise
        if ack.reason != 0:
            c.close()
            return None, ack
        return c, ack

    def _reconnect(self):
        """Same client id, clean_start false: this node first, then the others."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        order = self.cluster.nodes
        start = order.index(self.node)
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        attempts = []
        while time.monotonic() < deadline and not self.stop.is_set():
            for node in order[start:] + order[:start]:
                try:
                    conn, ack = self._connect(node, clean=False)
                except (OSError, r.Closed, r.Timeout) as e:
                    attempts.append("node %d: %r" % (node.id, e))
                    continue
                if conn is None:
                    attempts.append("node %d: CONNACK 0x%02x" % (node.id, ack.reason))
                    continue
                self.conn, self.node = conn, node
                self.reconnects.append((node.id, ack.session_present))
                return
            time.sleep(0.1)
        raise AssertionError("%s could not reconnect within %.0f s: %s" % (
            self.client_id, RECONNECT_TIMEOUT, attempts[-6:]))

    def _pid(self, pending):
        while True:
            self.next_pid = self.next_pid % 65535 + 1
            if self.next_pid not in pending:
                return self.next_pid

    # -- the stream ---------------------------------------------------------

    def _send(self, op, pid):
        kind, name, payload = op
        if kind == "sub":
            self.conn.send(r.subscribe(pid, [(name, r.sub_options(qos=1))], version=5))
        else:
            self.conn.send(r.publish(name, payload, qos=1, retain=True, pid=pid, version=5))

    def _answered(self, op, code):
        kind, name, payload = op
        if (kind == "sub" and granted(code)) or (kind == "ret" and code in PUBACK_OK):
            if kind == "sub":
                self.acked_subs.add(name)
            else:
                self.acked_retained[name] = payload
            if self.kill_count:
                self.acked_after_kill += 1
        else:
            self.refused += 1
        self.progress.add()

    def run(self):
        try:
            conn, ack = self._connect(self.node, clean=True)
            assert conn is not None, "%s: first CONNACK 0x%02x" % (self.client_id, ack.reason)
            self.conn = conn
            self._stream()
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            if self.conn is not None:
                self.conn.close()

    def _stream(self):
        pending = {}
        i = 0
        while (i < len(self.ops) or pending) and not self.stop.is_set():
            try:
                while i < len(self.ops) and len(pending) < WINDOW:
                    pid = self._pid(pending)
                    self._send(self.ops[i], pid)
                    pending[pid] = self.ops[i]
                    i += 1
                p = self.conn.recv(timeout=OP_TIMEOUT)
            except (OSError, r.Closed, r.Timeout):
                # Whatever was in flight is indeterminate.
                self.indeterminate += len(pending)
                for _ in pending:
                    self.progress.add()
                pending.clear()
                self._reconnect()
                continue
            if p.type == r.SUBACK and p.pid in pending:
                self._answered(pending.pop(p.pid), p.codes[0] if p.codes else 0x80)
            elif p.type == r.PUBACK and p.pid in pending:
                self._answered(pending.pop(p.pid), p.reason)
            elif p.type == r.PUBLISH and p.qos == 1:
                self.conn.send(r.ack_packet(r.PUBACK, p.pid, version=5))
            elif p.type == r.DISCONNECT:
                self.conn.close()     # the next recv raises Closed and reconnects
            elif p.type not in (r.PUBLISH, r.PINGRESP):
                raise AssertionError("%s: unexpected %r" % (self.client_id, p))


def make_ops(prefix, index, n):
    """Alternating distinct subscriptions and retained topics; the filters
    match none of the topics, so no stream receives messages."""
    ops = []
    for k in range(n):
        if k % 2 == 0:
            ops.append(("sub", "%s/s/%d/%d" % (prefix, index, k), None))
        else:
            ops.append(("ret", "%s/r/%d/%d" % (prefix, index, k), ("%d:%d" % (index, k)).encode()))
    return ops


def acked_problems(streams, dump):
    """What acknowledged operations are missing from dump ('' if none)."""
    missing_subs, wrong_retained = [], []
    for s in streams:
        cid = s.client_id.encode()
        for f in s.acked_subs:
            rec = dump.subs.get((cid, f.encode()))
            if rec is None or rec["qos"] != "1":
                missing_subs.append((s.client_id, f, rec))
        for topic, payload in s.acked_retained.items():
            if dump.payload(topic) != payload:
                wrong_retained.append((topic, payload, dump.payload(topic)))
    if not missing_subs and not wrong_retained:
        return ""
    return "%d acknowledged subscriptions missing (e.g. %s), %d acknowledged retained messages missing " \
           "or different (e.g. %s)" % (len(missing_subs), missing_subs[:5], len(wrong_retained), wrong_retained[:5])


def test_leader_kill_loses_no_acknowledged_operation(cluster, clients):
    leader, term = cluster.wait_leader()
    prefix = "t3-" + uid("k")
    progress = Progress()
    stop = threading.Event()
    per = OPS // WORKERS
    streams = [OpStream(cluster, cluster.nodes[i % 3], i, prefix, make_ops(prefix, i, per), progress, stop)
               for i in range(WORKERS)]
    killed = []
    try:
        for s in streams:
            s.start()
        for n, at in enumerate(KILL_AT):
            progress.wait(int(per * WORKERS * at), 120, streams)
            if killed and not killed[-1].running():
                # Long runs: the node killed last time comes back first.
                killed[-1].start()
                killed[-1].wait_listening()
                cluster.wait_leader()
            leader, term = cluster.wait_leader()
            leader.kill()
            killed.append(leader)
            for s in streams:
                s.kill_count = n + 1
            survivors = [x for x in cluster.nodes if x is not leader]
            # A new leader: a surviving node reports one with a higher term.
            new_leader, new_term = cluster.wait_leader(nodes=survivors, min_term=term)
            assert new_leader is not leader and new_term > term
        for s in streams:
            s.join(timeout=180)
    finally:
        stop.set()
        for s in streams:
            s.join(timeout=10)
    errors = [(s.client_id, s.error) for s in streams if s.error is not None or s.is_alive()]
    assert not errors, "streams failed: %s" % errors

    acked = sum(len(s.acked_subs) + len(s.acked_retained) for s in streams)
    summary = "acknowledged %d, refused %d, indeterminate %d of %d" % (
        acked, sum(s.refused for s in streams), sum(s.indeterminate for s in streams), per * WORKERS)
    print(summary)
    # The test proves little if the cluster acknowledged little.
    assert acked >= per * WORKERS // 2, summary
    assert sum(s.acked_after_kill for s in streams) > 0, "nothing acknowledged after the kill: " + summary
    reconnects = [(s.client_id, rc) for s in streams for rc in s.reconnects]
    assert reconnects, "no client reconnected after the kill"
    assert all(sp for _, (_, sp) in reconnects), "reconnections without session present: %s" % reconnects

    # The new leader keeps serving.
    last = killed[-1]
    survivors = [x for x in cluster.nodes if x is not last]
    check_serving(clients, survivors[0], survivors[1], survivors[0], tag=prefix + "/serve")

    # Every acknowledged operation is in the survivors' state ...
    cluster.wait_caught_up(survivors)
    cluster.wait_dumps(lambda d: acked_problems(streams, d), nodes=survivors)
    # ... and, restarted on the same data dir, the killed node catches up to it.
    last.start()
    last.wait_listening()
    cluster.wait_leader()
    dumps = cluster.wait_caught_up(cluster.nodes, timeout=60)
    assert not acked_problems(streams, dumps[0])

    # Via MQTT: a fresh subscriber on a survivor and on the restarted node gets
    # every acknowledged retained message.
    want = {t: p for s in streams for t, p in s.acked_retained.items()}
    for node in (survivors[0], last):
        c = clients.connected(node)
        assert c.subscribe(prefix + "/r/#", qos=0) == [0]
        receive_topics(c, want, timeout=60)
        c.disconnect()
    # And each stream's session is still there.
    for s in streams[:3]:
        c, sp = persistent(clients, last, client_id=s.client_id)
        assert sp, "%s: no session present on the restarted node" % s.client_id
        c.disconnect()
