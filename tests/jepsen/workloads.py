"""Workloads: threads ("processes") that generate MQTT operations against
the backend's nodes and record them in the history. Clients are raw MQTT 5
connections (tests/integration/rawmqtt.py): what is recorded is what crossed
the wire, with no client library retrying or deduplicating behind the
history's back.

register   a register per retained topic: write = connect, retained QoS 1
           PUBLISH (ok on PUBACK < 0x80, info on another PUBACK, a timeout or a
           dropped connection, fail when no connection or CONNACK 0 was had,
           i.e. nothing was sent); read = connect, SUBSCRIBE, the retained
           PUBLISH that follows the SUBACK, or none once a PINGRESP shows
           nothing is coming (the node answers packets of one connection in
           order). Checker: linearizable.
queue      numbered QoS 1 and QoS 2 publishes (two publishers, any node) into
           the persistent sessions of two subscribers, which stay a few
           seconds, disconnect (cleanly or by dropping the socket) and resume
           on another node; at the end each one resumes once more and drains.
           Checkers: queue, convergence.
ownership  one client id, two processes connecting it through different
           nodes again and again (each connection taking the session over);
           a publisher sends numbered QoS 1 messages to the session's
           subscription. Checkers: single-owner, queue (the session as the
           one subscriber), convergence.
"""

import random
import threading
import time

import backend  # noqa: F401  (puts tests/cluster and tests/integration on sys.path)
import rawmqtt as r

OP_TIMEOUT = 5.0       # commit_timeout_ms (2 s) plus a margin
EXPIRY = 3600


class Conn:
    """A raw MQTT 5 connection to (host, port). connect() returns the
    CONNACK; raises OSError/r.Closed/r.Timeout."""

    def __init__(self, endpoint, timeout=OP_TIMEOUT):
        host, port = endpoint
        self.raw = r.RawClient(port, version=5, host=host, timeout=timeout)

    def connect(self, client_id, clean=True, expiry=None, timeout=OP_TIMEOUT):
        props = {} if expiry is None else {"SessionExpiryInterval": expiry}
        self.raw.send(r.connect(client_id, version=5, clean=clean, keepalive=60, props=props))
        return self.raw.expect(r.CONNACK, timeout)

    def close(self, clean=True):
        if clean:
            self.raw.disconnect(reason=0)
        else:
            self.raw.close()


def _dial(endpoint, client_id, clean=True, expiry=None):
    """(Conn, CONNACK) or (None, why) when no session could be had."""
    try:
        c = Conn(endpoint)
    except OSError as e:
        return None, "connect: %s" % e.__class__.__name__
    try:
        ack = c.connect(client_id, clean=clean, expiry=expiry)
    except (OSError, r.Closed, r.Timeout, AssertionError) as e:
        c.close(clean=False)
        return None, "CONNACK: %s" % e.__class__.__name__
    if ack.reason != 0:
        c.close(clean=False)
        return None, "CONNACK 0x%02x" % ack.reason
    return c, ack


class Workload:
    name = "?"
    checkers = ()
    message_expiry = None   # Message Expiry Interval (s) of the publishes, None: none

    def __init__(self, backend_, history, rng, run_id):
        self.backend = backend_
        self.history = history
        self.rng = rng
        self.run_id = run_id
        self.stopping = threading.Event()
        self.threads = []
        self.errors = []

    def endpoint(self, node_id):
        return self.backend.endpoint(node_id)

    def random_node(self):
        return self.rng.choice(list(self.backend.ids))

    def spawn(self, fn, *args):
        def guarded():
            try:
                fn(*args)
            except Exception as e:  # a workload bug must show, not hang the run
                self.errors.append("%s: %r" % (threading.current_thread().name, e))
        t = threading.Thread(target=guarded, daemon=True, name="%s-%d" % (self.name, len(self.threads)))
        self.threads.append(t)
        t.start()

    def target_node(self):
        return None

    def setup(self):
        pass

    def start(self):
        raise NotImplementedError

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=OP_TIMEOUT * 3)

    def final(self):
        pass

    def think(self, lo=0.02, hi=0.08):
        self.stopping.wait(self.rng.uniform(lo, hi))


# ---------------------------------------------------------------------------


class RegisterWorkload(Workload):
    name = "register"
    checkers = ("linearizable",)
    PROCESSES = 4
    KEYS = 3

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.keys = ["r%d" % i for i in range(self.KEYS)]

    def topic(self, key):
        return "jepsen/%s/%s" % (self.run_id, key)

    def start(self):
        for p in range(self.PROCESSES):
            self.spawn(self.process, p)

    def process(self, p):
        rng = random.Random(self.rng.random())
        seq = 0
        while not self.stopping.is_set():
            key = rng.choice(self.keys)
            node = rng.choice(list(self.backend.ids))
            if rng.random() < 0.5:
                seq += 1
                self.write(p, node, key, "%d-%d" % (p, seq))
            else:
                self.read(p, node, key)
            self.think()

    def begin(self, p, f, value, node, key):
        """Invokes f and connects: (invoke op, Conn), or (invoke op, None)
        after recording the fail (nothing was sent)."""
        inv = self.history.invoke(p, f, value, key=key, node=node)
        c, ack = _dial(self.endpoint(node), "jr-%s-%d" % (self.run_id, p))
        if c is None:
            self.history.complete(inv, "fail", error=ack)
        return inv, c

    def write(self, p, node, key, value):
        inv, c = self.begin(p, "write", value, node, key)
        if c is None:
            return
        try:
            props = {"MessageExpiryInterval": self.message_expiry} if self.message_expiry else None
            c.raw.send(r.publish(self.topic(key), value.encode(), qos=1, retain=True, pid=1, version=5,
                                 props=props))
            puback = c.raw.expect(r.PUBACK, OP_TIMEOUT)
            if puback.reason < 0x80:
                self.history.complete(inv, "ok")
            else:
                self.history.complete(inv, "info", error="PUBACK 0x%02x" % puback.reason)
        except (OSError, r.Closed, r.Timeout, AssertionError) as e:
            self.history.complete(inv, "info", error=e.__class__.__name__)
        finally:
            c.close(clean=False)

    def read(self, p, node, key):
        inv, c = self.begin(p, "read", None, node, key)
        if c is None:
            return
        try:
            c.raw.send(r.subscribe(1, [(self.topic(key), 1)], version=5))
            deadline = time.monotonic() + OP_TIMEOUT
            value, subacked = None, False
            # The retained PUBLISH may come before or after the SUBACK; once
            # both the SUBACK and the PINGRESP sent after it are in, nothing
            # retained is coming.
            while True:
                pk = c.raw.recv(max(0.001, deadline - time.monotonic()))
                if pk.type == r.PUBLISH:
                    if pk.qos == 1:
                        c.raw.send(r.ack_packet(r.PUBACK, pk.pid, 5))
                    if pk.retain and value is None:
                        value = pk.payload.decode()
                        if subacked:
                            break
                elif pk.type == r.SUBACK:
                    if pk.codes[0] > 2:
                        self.history.complete(inv, "fail", error="SUBACK 0x%02x" % pk.codes[0])
                        return
                    subacked = True
                    if value is not None:
                        break
                    c.raw.send(r.pingreq())
                elif pk.type == r.PINGRESP:
                    break
                else:
                    raise r.ProtocolMismatch("unexpected %r" % pk)
            self.history.complete(inv, "ok", value=value)
        except (OSError, r.Closed, r.Timeout, AssertionError) as e:
            self.history.complete(inv, "fail", error=str(e)[:200] or e.__class__.__name__)  # a read has no effect
        finally:
            c.close(clean=False)


# ---------------------------------------------------------------------------


class Subscriber:
    """A durable subscriber's client side, which lives across its connections:
    the QoS 2 packet ids it received and has not yet seen PUBREL for (a
    PUBLISH with such an id is the same message again, MQTT 4.3.3), and the
    node it is on."""

    def __init__(self, name, client_id):
        self.name = name
        self.client_id = client_id
        self.unreleased = set()
        self.node = None
        self.conn = None
        self.subscribed = False


class SessionWorkload(Workload):
    """Shared by queue and ownership: durable sessions that receive, record
    every delivery and move between nodes."""

    def receive(self, p, sub, conn, until, conn_id=None):
        """Reads until time.monotonic() >= until (or stop), recording
        deliveries; returns why it stopped: "time", or the DISCONNECT /
        connection loss."""
        while time.monotonic() < until:
            try:
                pk = conn.raw.recv(max(0.01, min(0.2, until - time.monotonic())))
            except r.Timeout:
                if self.stopping.is_set() and until > time.monotonic() + 3600:
                    return "stop"
                continue
            except (OSError, r.Closed) as e:
                self.history.add(p, "info", "lost", sub.name, sub=sub.name, conn=conn_id, error=e.__class__.__name__)
                return "closed"
            if pk.type == r.PUBLISH:
                payload = pk.payload.decode(errors="replace")
                if pk.qos == 2 and pk.pid in sub.unreleased:
                    conn.raw.try_send(r.ack_packet(r.PUBREC, pk.pid, 5))  # the same message again
                    continue
                self.history.add(p, "ok", "deliver", payload, sub=sub.name, conn=conn_id, qos=pk.qos,
                                 dup=pk.dup, pid=pk.pid, node=sub.node)
                if pk.qos == 1:
                    conn.raw.try_send(r.ack_packet(r.PUBACK, pk.pid, 5))
                elif pk.qos == 2:
                    sub.unreleased.add(pk.pid)
                    conn.raw.try_send(r.ack_packet(r.PUBREC, pk.pid, 5))
            elif pk.type == r.PUBREL:
                sub.unreleased.discard(pk.pid)
                conn.raw.try_send(r.ack_packet(r.PUBCOMP, pk.pid, 5))
            elif pk.type == r.DISCONNECT:
                self.history.add(p, "info", "disconnected", "0x%02x" % pk.reason, sub=sub.name, conn=conn_id)
                return "disconnect"
        return "time"

    def drain(self, p, sub, quiet=3.0, limit=30.0):
        """Resumes sub's session on any node and receives until quiet seconds
        pass without a message (at most limit seconds)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            node = self.rng.choice(list(self.backend.ids))
            inv = self.history.invoke(p, "connect", sub.name, sub=sub.name, node=node, conn="%s-final" % sub.name)
            c, ack = _dial(self.endpoint(node), sub.client_id, clean=False, expiry=EXPIRY)
            if c is None:
                self.history.complete(inv, "fail", error=ack)
                time.sleep(0.3)
                continue
            self.history.complete(inv, "ok", session_present=ack.session_present)
            sub.node = node
            while time.monotonic() < deadline:
                before = len(self.history.ops)
                why = self.receive(p, sub, c, time.monotonic() + quiet, conn_id="%s-final" % sub.name)
                if why != "time":
                    break
                if not any(op["f"] == "deliver" and op.get("sub") == sub.name for op in self.history.ops[before:]):
                    c.close()
                    return True
            c.close(clean=False)
        return False


class QueueWorkload(SessionWorkload):
    name = "queue"
    checkers = ("queue", "convergence")
    SUBSCRIBERS = 2
    PUBLISHERS = 2

    def setup(self):
        self.topic = "jepsen/%s/q" % self.run_id
        self.subs = [Subscriber("s%d" % i, "jq-%s-s%d" % (self.run_id, i)) for i in range(self.SUBSCRIBERS)]
        for i, sub in enumerate(self.subs):
            node = self.backend.ids[i % len(self.backend.ids)]
            p = "sub%d" % i
            inv = self.history.invoke(p, "subscribe", self.topic, sub=sub.name, node=node)
            c, ack = _dial(self.endpoint(node), sub.client_id, clean=True, expiry=EXPIRY)
            if c is None:
                raise AssertionError("subscriber %s could not connect to node %d: %s" % (sub.name, node, ack))
            c.raw.send(r.subscribe(1, [(self.topic, 2)], version=5))
            suback = c.raw.expect(r.SUBACK, OP_TIMEOUT)
            assert suback.codes == [2], "SUBSCRIBE refused: %r" % suback
            self.history.complete(inv, "ok")
            sub.conn, sub.node = c, node

    def target_node(self):
        return self.subs[0].node

    def start(self):
        for i, sub in enumerate(self.subs):
            self.spawn(self.subscriber, "sub%d" % i, sub)
        for i in range(self.PUBLISHERS):
            self.spawn(self.publisher, "pub%d" % i)

    def subscriber(self, p, sub):
        rng = random.Random(self.rng.random())
        c = sub.conn
        n = 0
        while not self.stopping.is_set():
            n += 1
            conn_id = "%s-%d" % (sub.name, n)
            self.receive(p, sub, c, time.monotonic() + rng.uniform(2.0, 4.0), conn_id=conn_id)
            c.close(clean=rng.random() < 0.5)
            c = None
            # Resume on another node (any, while that one refuses).
            while c is None and not self.stopping.is_set():
                node = rng.choice([i for i in self.backend.ids if i != sub.node] or list(self.backend.ids))
                inv = self.history.invoke(p, "connect", sub.name, sub=sub.name, node=node, conn=conn_id)
                c, ack = _dial(self.endpoint(node), sub.client_id, clean=False, expiry=EXPIRY)
                if c is None:
                    self.history.complete(inv, "fail", error=ack)
                    self.stopping.wait(0.3)
                else:
                    self.history.complete(inv, "ok", session_present=ack.session_present)
                    sub.node = node
        if c is not None:
            c.close()

    def publisher(self, p):
        rng = random.Random(self.rng.random())
        seq, pid, c = 0, 0, None
        while not self.stopping.is_set():
            if c is None:
                node = rng.choice(list(self.backend.ids))
                inv = self.history.invoke(p, "connect", None, node=node)
                c, ack = _dial(self.endpoint(node), "jq-%s-%s" % (self.run_id, p))
                if c is None:
                    self.history.complete(inv, "fail", error=ack)
                    self.stopping.wait(0.2)
                    continue
                self.history.complete(inv, "ok")
            seq += 1
            pid = pid % 65535 + 1
            qos = 1 + seq % 2
            msg = "q%d-%s-%d" % (qos, p, seq)
            inv = self.history.invoke(p, "publish", msg, qos=qos, node=node)
            try:
                props = {"MessageExpiryInterval": self.message_expiry} if self.message_expiry else None
                c.raw.send(r.publish(self.topic, msg.encode(), qos=qos, pid=pid, version=5, props=props))
                if qos == 1:
                    a = c.raw.expect(r.PUBACK, OP_TIMEOUT)
                else:
                    a = c.raw.expect(r.PUBREC, OP_TIMEOUT)
                    if a.reason < 0x80:
                        c.raw.send(r.ack(r.PUBREL, pid, version=5))
                        a = c.raw.expect(r.PUBCOMP, OP_TIMEOUT)
                if a.reason < 0x80:
                    self.history.complete(inv, "ok")
                else:
                    self.history.complete(inv, "info", error="0x%02x" % a.reason)
                    c.close(clean=False)
                    c = None
            except (OSError, r.Closed, r.Timeout, AssertionError) as e:
                self.history.complete(inv, "info", error=e.__class__.__name__)
                c.close(clean=False)
                c = None
            self.think(0.01, 0.04)
        if c is not None:
            c.close()

    def final(self):
        for i, sub in enumerate(self.subs):
            self.drain("sub%d" % i, sub)


class OwnershipWorkload(SessionWorkload):
    name = "ownership"
    checkers = ("single-owner", "queue", "convergence")
    CONNECTORS = 2

    def setup(self):
        self.topic = "jepsen/%s/o" % self.run_id
        self.sub = Subscriber("owner", "jo-%s" % self.run_id)
        self.conns = 0
        self.lock = threading.Lock()
        node = self.backend.ids[0]
        inv = self.history.invoke("setup", "subscribe", self.topic, sub=self.sub.name, node=node)
        c, ack = _dial(self.endpoint(node), self.sub.client_id, clean=True, expiry=EXPIRY)
        if c is None:
            raise AssertionError("could not connect to node %d: %s" % (node, ack))
        c.raw.send(r.subscribe(1, [(self.topic, 1)], version=5))
        assert c.raw.expect(r.SUBACK, OP_TIMEOUT).codes == [1]
        self.history.complete(inv, "ok")
        c.close()

    def target_node(self):
        return self.sub.node

    def start(self):
        for i in range(self.CONNECTORS):
            self.spawn(self.connector, "c%d" % i)
        self.spawn(self.publisher, "pub")

    def connector(self, p):
        rng = random.Random(self.rng.random())
        # Each connection keeps its own QoS 2 state (none here: QoS 1 only).
        me = Subscriber(self.sub.name, self.sub.client_id)
        while not self.stopping.is_set():
            node = rng.choice(list(self.backend.ids))
            with self.lock:
                self.conns += 1
                conn_id = "%s-%d" % (p, self.conns)
            inv = self.history.invoke(p, "connect", self.sub.name, sub=self.sub.name, node=node, conn=conn_id)
            c, ack = _dial(self.endpoint(node), self.sub.client_id, clean=False, expiry=EXPIRY)
            if c is None:
                self.history.complete(inv, "fail" if ack.startswith("CONNACK 0x") or ack.startswith("connect")
                                      else "info", error=ack)
                self.stopping.wait(0.2)
                continue
            self.history.complete(inv, "ok", session_present=ack.session_present)
            self.sub.node = me.node = node
            self.receive(p, me, c, time.monotonic() + rng.uniform(0.5, 2.0), conn_id=conn_id)
            c.close(clean=rng.random() < 0.5)
            self.think(0.05, 0.3)

    def publisher(self, p):
        rng = random.Random(self.rng.random())
        seq = 0
        while not self.stopping.is_set():
            node = rng.choice(list(self.backend.ids))
            seq += 1
            msg = "o-%d" % seq
            inv = self.history.invoke(p, "publish", msg, qos=1, node=node)
            c, ack = _dial(self.endpoint(node), "jo-%s-pub" % self.run_id)
            if c is None:
                self.history.complete(inv, "fail", error=ack)
                self.stopping.wait(0.2)
                continue
            try:
                c.raw.send(r.publish(self.topic, msg.encode(), qos=1, pid=1, version=5))
                a = c.raw.expect(r.PUBACK, OP_TIMEOUT)
                self.history.complete(inv, "ok" if a.reason < 0x80 else "info", error="0x%02x" % a.reason)
            except (OSError, r.Closed, r.Timeout, AssertionError) as e:
                self.history.complete(inv, "info", error=e.__class__.__name__)
            finally:
                c.close(clean=False)
            self.think(0.03, 0.08)

    def final(self):
        self.drain("final", self.sub)


WORKLOADS = {"register": RegisterWorkload, "queue": QueueWorkload, "ownership": OwnershipWorkload}
