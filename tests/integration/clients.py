"""Synchronous wrapper over paho-mqtt 1.6 for tests: every call waits for its
acknowledgement with a timeout, and received messages land in a queue.

The network loop is our own thread calling Client.loop(), not loop_start():
paho's loop_forever reconnects by itself, which would turn a session takeover
into an endless ping-pong between two test clients.
"""

import queue
import ssl
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import pytest

PROTOCOLS = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}
TIMEOUT = 5.0


def uid(prefix="c"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def props(packet_type, **values):
    """Properties(packet_type) with the given attributes, e.g.
    props(PacketTypes.PUBLISH, UserProperty=[("a", "b")])."""
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


def pub_props(**values):
    return props(PacketTypes.PUBLISH, **values)


def connect_props(**values):
    return props(PacketTypes.CONNECT, **values)


def sub_props(**values):
    return props(PacketTypes.SUBSCRIBE, **values)


def will_props(**values):
    return props(PacketTypes.WILLMESSAGE, **values)


def opts(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    return SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=retain_as_published,
                            retainHandling=retain_handling)


def prop_dict(p):
    """A paho Properties object as a plain dict (empty for None)."""
    if p is None:
        return {}
    out = {}
    for name in p.names:
        attr = name.replace(" ", "")
        if hasattr(p, attr):
            out[attr] = getattr(p, attr)
    return out


class Message:
    """A received message (paho's MQTTMessage has __slots__), with the time
    it arrived and its v5 properties as a dict."""

    def __init__(self, msg):
        self.topic = msg.topic
        self.payload = msg.payload
        self.qos = msg.qos
        self.retain = bool(msg.retain)
        self.dup = bool(msg.dup)
        self.mid = msg.mid
        self.properties = getattr(msg, "properties", None)
        self.props = prop_dict(self.properties)
        self.received_at = time.monotonic()

    def __repr__(self):
        return "<Message %r qos=%d retain=%d %r %r>" % (self.topic, self.qos, self.retain,
                                                         self.payload[:40], self.props)


class Client:
    """A paho client bound to a broker. version: 3 (3.1), 4 (3.1.1) or 5."""

    def __init__(self, broker, client_id=None, version=5, clean=True):
        self.broker = broker
        self.version = version
        self.client_id = uid() if client_id is None else client_id
        transport = getattr(broker, "transport", "tcp")
        paho_transport = "websockets" if transport in ("ws", "wss") else "tcp"
        if version == 5:
            self.c = mqtt.Client(self.client_id, protocol=mqtt.MQTTv5, transport=paho_transport)
        else:
            self.c = mqtt.Client(self.client_id, clean_session=clean, protocol=PROTOCOLS[version],
                                 transport=paho_transport)
        self.clean = clean
        if transport in ("tls", "wss"):
            self.c.tls_set_context(ssl.create_default_context(cafile=broker.cafile))
            self._serialise_tls()
        self.websockets = paho_transport == "websockets"
        if self.websockets:
            self.c.ws_set_options(path=getattr(broker, "ws_path", "/mqtt"))
        self.c.max_inflight_messages_set(65535)
        self.c.max_queued_messages_set(0)
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnect_rc = None
        self._acks = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = None
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_disconnect = self._on_disconnect

    def _serialise_tls(self):
        """Our loop thread reads while the test's thread writes (subscribe,
        publish): one OpenSSL connection must not be used by two threads at
        once (the records it sends get corrupted: "bad record mac" at the
        broker), so paho's socket reads and writes take turns here."""
        lock = threading.RLock()
        recv, send = self.c._sock_recv, self.c._sock_send

        def locked_recv(bufsize):
            with lock:
                if self.c._sock is None:  # closed by the other thread meanwhile
                    raise BlockingIOError()
                return recv(bufsize)

        def locked_send(buf):
            with lock:
                return send(buf)
        self.c._sock_recv, self.c._sock_send = locked_recv, locked_send

    # -- callbacks ---------------------------------------------------------

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        code = rc.value if hasattr(rc, "value") else rc
        self.connack.put((code, flags.get("session present", 0), properties))

    def _on_message(self, client, userdata, msg):
        self.messages.put(Message(msg))

    def _on_subscribe(self, client, userdata, mid, codes, properties=None):
        if self.version == 5:
            codes = [c.value for c in codes]
        with self._cond:
            self._acks[("sub", mid)] = list(codes)
            self._cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, properties=None, codes=None):
        if self.version == 5:
            if codes is None:
                codes = []
            elif not isinstance(codes, list):
                codes = [codes]
            codes = [c.value for c in codes]
        with self._cond:
            self._acks[("unsub", mid)] = codes
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self.disconnect_rc = rc.value if hasattr(rc, "value") else rc
        self.disconnected.set()

    def _wait_ack(self, key, timeout):
        with self._cond:
            ok = self._cond.wait_for(lambda: key in self._acks, timeout)
            assert ok, "no %s acknowledgement for mid %s within %.1fs" % (key[0], key[1], timeout)
            return self._acks.pop(key)

    def _loop(self):
        while not self._stop.is_set():
            try:
                rc = self.c.loop(timeout=0.02)
            except OSError:
                # the socket was closed under paho (a test's close or kill
                # while this thread read): the connection is gone
                rc = mqtt.MQTT_ERR_CONN_LOST
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self.disconnected.set()
                return

    # -- operations --------------------------------------------------------

    def connect(self, clean_start=True, keepalive=60, properties=None, will=None,
                expect_rc=0, timeout=TIMEOUT, username=None, password=None):
        """Connects and waits for CONNACK. Returns (reason code, session present,
        CONNACK properties as a dict). will: dict(topic, payload, qos, retain,
        properties)."""
        if will is not None:
            self.c.will_set(will["topic"], will.get("payload"), will.get("qos", 0),
                            will.get("retain", False), will.get("properties"))
        if username is None and getattr(self.broker, "auth", None):
            username, password = self.broker.auth  # the suites' authentication mode (authmode.py)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.disconnected.clear()
        self.c._thread = None
        if self.version == 5:
            self.c.connect(self.broker.host, self.broker.port, keepalive=keepalive,
                           clean_start=clean_start, properties=properties)
        else:
            self.c.connect(self.broker.host, self.broker.port, keepalive=keepalive)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        if self.websockets:
            # paho writes a packet from the calling thread unless it knows of a
            # loop thread; its WebSocket wrapper is not safe for two writers
            # (frames lost or sent twice), so the loop thread does every write
            self.c._thread = self._thread
        try:
            rc, sp, p = self.connack.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no CONNACK within %.1fs" % timeout)
        if self.version == 5 and rc == 0:
            # paho 1.6 ignores the server's Receive Maximum; respect it here.
            self.c.max_inflight_messages_set(prop_dict(p).get("ReceiveMaximum", 65535))
        if expect_rc is not None:
            assert rc == expect_rc, "CONNACK reason %s, expected %s" % (rc, expect_rc)
        return rc, bool(sp), prop_dict(p)

    def subscribe(self, topic, qos=0, options=None, properties=None, timeout=TIMEOUT):
        """topic: a filter or a list of (filter, qos or SubscribeOptions).
        Returns the list of SUBACK codes."""
        if self.version == 5 and options is not None:
            rc, mid = self.c.subscribe(topic, options=options, properties=properties)
        elif self.version == 5:
            rc, mid = self.c.subscribe(topic, qos=qos, properties=properties)
        else:
            rc, mid = self.c.subscribe(topic, qos=qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, "subscribe failed locally: %s" % rc
        return self._wait_ack(("sub", mid), timeout)

    def unsubscribe(self, topic, properties=None, timeout=TIMEOUT):
        if self.version == 5:
            rc, mid = self.c.unsubscribe(topic, properties=properties)
        else:
            rc, mid = self.c.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        return self._wait_ack(("unsub", mid), timeout)

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None, wait=True, timeout=TIMEOUT):
        """Publishes and (by default) waits until the QoS flow completed."""
        if self.version == 5:
            info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        else:
            info = self.c.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, "publish failed locally: %s" % info.rc
        if wait:
            info.wait_for_publish(timeout)
            assert info.is_published(), "QoS %d publish to %r not acknowledged within %.1fs" % (qos, topic, timeout)
        return info

    def expect_message(self, timeout=TIMEOUT, topic=None):
        """Next message (optionally skipping ones on other topics)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                m = self.messages.get(timeout=max(0.001, remaining))
            except queue.Empty:
                raise AssertionError("%s: no message%s within %.1fs" % (
                    self.client_id, "" if topic is None else " on %r" % topic, timeout))
            if topic is None or m.topic == topic:
                return m

    def expect_messages(self, n, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        out = []
        for _ in range(n):
            out.append(self.expect_message(max(0.001, deadline - time.monotonic())))
        return out

    def expect_no_message(self, timeout=0.5):
        """Asserts that nothing arrives for `timeout` seconds. Prefer
        until_marker(), which needs no wait."""
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError("%s: unexpected message on %r: %r" % (self.client_id, m.topic, m.payload[:60]))

    def until_marker(self, marker_topic, timeout=TIMEOUT):
        """Messages received before the first one on marker_topic (which is
        consumed). A marker published after an action proves by its arrival
        that nothing the action caused is still in flight."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = self.messages.get(timeout=max(0.001, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("%s: marker on %r never arrived (got %r)" % (
                    self.client_id, marker_topic, [(x.topic, x.payload) for x in out]))
            if m.topic == marker_topic:
                return out
            out.append(m)

    def disconnect(self, reasoncode=None, properties=None):
        """Clean DISCONNECT; waits until the socket is closed."""
        if self._thread is None:
            return
        if self.version == 5 and reasoncode is not None:
            from paho.mqtt.reasoncodes import ReasonCodes
            rc = ReasonCodes(PacketTypes.DISCONNECT, identifier=reasoncode)
            self.c.disconnect(reasoncode=rc, properties=properties)
        else:
            self.c.disconnect(properties=properties) if self.version == 5 else self.c.disconnect()
        self.disconnected.wait(TIMEOUT)
        self._stop.set()
        self._thread.join(TIMEOUT)
        self._thread = None
        self.c._thread = None

    def drop(self):
        """Closes the socket without DISCONNECT (an abnormal close)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(TIMEOUT)
            self._thread = None
        self.c._thread = None
        sock = self.c.socket()
        if sock is not None:
            sock.close()
        self.disconnected.set()

    def close(self):
        """Best-effort cleanup for fixtures: stop the loop, close the socket."""
        if self._thread is not None:
            self.drop()


class ClientFactory:
    """Creates clients and closes whatever is left at teardown."""

    def __init__(self):
        self.clients = []

    def __call__(self, broker, client_id=None, version=5, clean=True):
        c = Client(broker, client_id=client_id, version=version, clean=clean)
        self.clients.append(c)
        return c

    def connected(self, broker, client_id=None, version=5, clean=True, **kw):
        c = self(broker, client_id=client_id, version=version, clean=clean)
        c.connect(**kw)
        return c

    def close_all(self):
        for c in self.clients:
            c.close()


def starling_only(broker, why):
    """Skips at run time when the broker under test is Mosquitto."""
    if broker.is_mosquitto:
        pytest.skip("Starling-specific: " + why)


def mosquitto_nonconformant(broker, why):
    """Skips in Mosquitto mode for a point where Mosquitto 2.0.11 departs from
    the specification; `why` cites the normative statement."""
    if broker.is_mosquitto:
        pytest.skip("Mosquitto 2.0.11 non-conformant: " + why)
