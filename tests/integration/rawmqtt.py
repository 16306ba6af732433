"""Hand-built MQTT packets over a plain socket, for what real clients cannot do.

Encoders build exact bytes (DUP flags, packet ids, properties, malformed
variants); RawClient reads exactly one packet at a time with a timeout and
decodes it into a Packet. Written from the MQTT 3.1, 3.1.1 and 5.0
specifications; nothing here is clever on purpose, so a test reads like the
wire trace it checks.
"""

import socket
import ssl
import struct
import time

import wsclient

# The transport RawClient speaks by default, and the CA it checks the broker's
# certificate on (set by conftest.py from STARLING_TEST_TRANSPORT).
TRANSPORT = "tcp"
CAFILE = None
# (user name, password) that connect() sends when given neither and no flags:
# the suites' authentication mode sets it per test (authmode.py).
DEFAULT_AUTH = None


def tls_wrap(sock, cafile=None, certfile=None, keyfile=None, server_hostname="localhost"):
    """Runs a TLS handshake on a connected socket (client side, the server's
    certificate checked against cafile) and returns the TLS socket."""
    ctx = ssl.create_default_context(cafile=cafile or CAFILE)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx.wrap_socket(sock, server_hostname=server_hostname)

# Control packet types.
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP = 8, 9, 10, 11, 12, 13
DISCONNECT, AUTH = 14, 15

TYPE_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
    6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE",
    11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}

# Property identifier -> (name, wire type). Types: byte, u16, u32, varint,
# str (UTF-8 string), bin (binary data), pair (UTF-8 string pair).
PROPERTIES = {
    0x01: ("PayloadFormatIndicator", "byte"),
    0x02: ("MessageExpiryInterval", "u32"),
    0x03: ("ContentType", "str"),
    0x08: ("ResponseTopic", "str"),
    0x09: ("CorrelationData", "bin"),
    0x0B: ("SubscriptionIdentifier", "varint"),
    0x11: ("SessionExpiryInterval", "u32"),
    0x12: ("AssignedClientIdentifier", "str"),
    0x13: ("ServerKeepAlive", "u16"),
    0x15: ("AuthenticationMethod", "str"),
    0x16: ("AuthenticationData", "bin"),
    0x17: ("RequestProblemInformation", "byte"),
    0x18: ("WillDelayInterval", "u32"),
    0x19: ("RequestResponseInformation", "byte"),
    0x1A: ("ResponseInformation", "str"),
    0x1C: ("ServerReference", "str"),
    0x1F: ("ReasonString", "str"),
    0x21: ("ReceiveMaximum", "u16"),
    0x22: ("TopicAliasMaximum", "u16"),
    0x23: ("TopicAlias", "u16"),
    0x24: ("MaximumQoS", "byte"),
    0x25: ("RetainAvailable", "byte"),
    0x26: ("UserProperty", "pair"),
    0x27: ("MaximumPacketSize", "u32"),
    0x28: ("WildcardSubscriptionAvailable", "byte"),
    0x29: ("SubscriptionIdentifierAvailable", "byte"),
    0x2A: ("SharedSubscriptionAvailable", "byte"),
}
PROPERTY_IDS = {name: (pid, kind) for pid, (name, kind) in PROPERTIES.items()}

# Properties that may legitimately appear more than once (values become lists).
REPEATABLE = {"UserProperty", "SubscriptionIdentifier"}


class Closed(Exception):
    """The peer closed the connection (EOF or reset) before a whole packet arrived."""


class Timeout(Exception):
    """No whole packet arrived within the timeout."""


class ProtocolMismatch(AssertionError):
    """A packet other than the expected one arrived."""


# ---------------------------------------------------------------------------
# Primitive encoders


def varint(n):
    if n < 0 or n > 268435455:
        raise ValueError("varint out of range: %d" % n)
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def u16(n):
    return struct.pack("!H", n)


def u32(n):
    return struct.pack("!I", n)


def mqtt_str(s):
    """UTF-8 string with a 2-byte length. Bytes are sent as given (for invalid UTF-8)."""
    b = s if isinstance(s, (bytes, bytearray)) else s.encode("utf-8")
    return u16(len(b)) + bytes(b)


def mqtt_bin(b):
    b = b if isinstance(b, (bytes, bytearray)) else b.encode("utf-8")
    return u16(len(b)) + bytes(b)


def _encode_one_property(name, value):
    pid, kind = PROPERTY_IDS[name]
    head = varint(pid)
    if kind == "byte":
        return head + bytes([value])
    if kind == "u16":
        return head + u16(value)
    if kind == "u32":
        return head + u32(value)
    if kind == "varint":
        return head + varint(value)
    if kind == "str":
        return head + mqtt_str(value)
    if kind == "bin":
        return head + mqtt_bin(value)
    if kind == "pair":
        k, v = value
        return head + mqtt_str(k) + mqtt_str(v)
    raise ValueError(kind)


def properties(props=None, raw=b""):
    """Encodes a property block: a dict of name -> value (a list for repeatable
    properties, UserProperty as a list of (key, value) pairs), plus raw bytes
    appended as-is (for duplicated or unknown properties)."""
    body = bytearray()
    for name, value in (props or {}).items():
        if name in REPEATABLE and isinstance(value, list):
            for v in value:
                body += _encode_one_property(name, v)
        else:
            body += _encode_one_property(name, value)
    body += raw
    return varint(len(body)) + bytes(body)


def packet(ptype, flags, body, remaining_length=None):
    """A whole packet; remaining_length overrides the computed one (for lies)."""
    rl = len(body) if remaining_length is None else remaining_length
    return bytes([(ptype << 4) | (flags & 0x0F)]) + varint(rl) + bytes(body)


# ---------------------------------------------------------------------------
# Packet encoders


def connect(client_id="", version=4, clean=True, keepalive=60, will=None,
            username=None, password=None, props=None, protocol_name=None,
            flags=None, reserved=False):
    """CONNECT. version: 3 (MQIsdp), 4 (3.1.1) or 5. will: dict with topic,
    payload, qos, retain, props. flags overrides the computed connect flags."""
    if protocol_name is None:
        protocol_name = "MQIsdp" if version == 3 else "MQTT"
    if DEFAULT_AUTH is not None and username is None and password is None and flags is None:
        username, password = DEFAULT_AUTH
    f = 0
    if clean:
        f |= 0x02
    if will is not None:
        f |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if password is not None:
        f |= 0x40
    if username is not None:
        f |= 0x80
    if reserved:
        f |= 0x01
    if flags is not None:
        f = flags
    body = mqtt_str(protocol_name) + bytes([version, f]) + u16(keepalive)
    if version == 5:
        body += properties(props)
    body += mqtt_str(client_id)
    if will is not None:
        if version == 5:
            body += properties(will.get("props"))
        body += mqtt_str(will["topic"]) + mqtt_bin(will.get("payload", b""))
    if username is not None:
        body += mqtt_str(username)
    if password is not None:
        body += mqtt_bin(password)
    return packet(CONNECT, 0, body)


def publish(topic, payload=b"", qos=0, retain=False, dup=False, pid=None,
            version=4, props=None, prop_raw=b""):
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_str(topic)
    if qos > 0 or pid is not None:
        body += u16(1 if pid is None else pid)
    if version == 5:
        body += properties(props, prop_raw)
    payload = payload if isinstance(payload, (bytes, bytearray)) else payload.encode("utf-8")
    return packet(PUBLISH, flags, body + payload)


def ack(ptype, pid, reason=None, props=None, version=4):
    """PUBACK, PUBREC, PUBREL or PUBCOMP. PUBREL gets its mandatory flags 0x2."""
    flags = 0x02 if ptype == PUBREL else 0
    body = u16(pid)
    if version == 5 and (reason is not None or props):
        body += bytes([reason or 0])
        if props:
            body += properties(props)
    return packet(ptype, flags, body)


def subscribe(pid, topics, version=4, props=None, flags=0x02):
    """topics: list of (filter, options byte) or bare filters (QoS 0).
    In v5 the options byte holds QoS | NL<<2 | RAP<<3 | RH<<4."""
    body = u16(pid)
    if version == 5:
        body += properties(props)
    for t in topics:
        if isinstance(t, tuple):
            f, opts = t
        else:
            f, opts = t, 0
        body += mqtt_str(f) + bytes([opts])
    return packet(SUBSCRIBE, flags, body)


def sub_options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    return qos | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | (retain_handling << 4)


def unsubscribe(pid, topics, version=4, props=None):
    body = u16(pid)
    if version == 5:
        body += properties(props)
    for f in topics:
        body += mqtt_str(f)
    return packet(UNSUBSCRIBE, 0x02, body)


def ack_packet(ptype, pid, version=4):
    return ack(ptype, pid, version=version)


def pingreq():
    return packet(PINGREQ, 0, b"")


def disconnect(reason=None, props=None, version=4):
    body = b""
    if version == 5 and (reason is not None or props):
        body = bytes([reason or 0])
        if props:
            body += properties(props)
    return packet(DISCONNECT, 0, body)


# ---------------------------------------------------------------------------
# Decoding


class Reader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def left(self):
        return len(self.data) - self.pos

    def take(self, n):
        if n > self.left():
            raise ValueError("truncated packet")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("!H", self.take(2))[0]

    def u32(self):
        return struct.unpack("!I", self.take(4))[0]

    def varint(self):
        mult, value = 1, 0
        for _ in range(4):
            b = self.byte()
            value += (b & 0x7F) * mult
            if not b & 0x80:
                return value
            mult *= 128
        raise ValueError("varint too long")

    def string(self):
        return self.take(self.u16()).decode("utf-8")

    def binary(self):
        return self.take(self.u16())

    def rest(self):
        return self.take(self.left())

    def properties(self):
        n = self.varint()
        sub = Reader(self.take(n))
        props = {}
        while sub.left():
            pid = sub.varint()
            if pid not in PROPERTIES:
                raise ValueError("unknown property 0x%02x" % pid)
            name, kind = PROPERTIES[pid]
            if kind == "byte":
                v = sub.byte()
            elif kind == "u16":
                v = sub.u16()
            elif kind == "u32":
                v = sub.u32()
            elif kind == "varint":
                v = sub.varint()
            elif kind == "str":
                v = sub.string()
            elif kind == "bin":
                v = sub.binary()
            else:
                v = (sub.string(), sub.string())
            if name in REPEATABLE:
                props.setdefault(name, []).append(v)
            elif name in props:
                raise ValueError("duplicate property %s" % name)
            else:
                props[name] = v
        return props


class Packet:
    """One decoded packet. Common: type, flags, body (raw remaining bytes).
    Per type: session_present, reason, props, dup, qos, retain, topic, pid,
    payload, codes."""

    def __init__(self, ptype, flags, body, version):
        self.type = ptype
        self.flags = flags
        self.body = body
        self.version = version
        self.props = {}
        self.reason = 0
        self.pid = None
        r = Reader(body)
        if ptype == CONNACK:
            self.session_present = bool(r.byte() & 0x01)
            self.reason = r.byte()
            if version == 5 and r.left():
                self.props = r.properties()
        elif ptype == PUBLISH:
            self.dup = bool(flags & 0x08)
            self.qos = (flags >> 1) & 0x03
            self.retain = bool(flags & 0x01)
            self.topic = r.string()
            if self.qos > 0:
                self.pid = r.u16()
            if version == 5:
                self.props = r.properties()
            self.payload = r.rest()
        elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.pid = r.u16()
            if version == 5 and r.left():
                self.reason = r.byte()
                if r.left():
                    self.props = r.properties()
        elif ptype in (SUBACK, UNSUBACK):
            self.pid = r.u16()
            if version == 5:
                self.props = r.properties()
            self.codes = list(r.rest())
        elif ptype == DISCONNECT or ptype == AUTH:
            if r.left():
                self.reason = r.byte()
                if r.left():
                    self.props = r.properties()

    @property
    def name(self):
        return TYPE_NAMES.get(self.type, "TYPE%d" % self.type)

    def __repr__(self):
        extra = ""
        if self.type == PUBLISH:
            extra = " topic=%r qos=%d dup=%d retain=%d pid=%s payload=%r" % (
                self.topic, self.qos, self.dup, self.retain, self.pid, self.payload[:40])
        elif self.type in (SUBACK, UNSUBACK):
            extra = " pid=%s codes=%s" % (self.pid, ["0x%02x" % c for c in self.codes])
        elif self.pid is not None:
            extra = " pid=%s" % self.pid
        if self.type in (CONNACK, DISCONNECT, PUBACK, PUBREC, PUBREL, PUBCOMP):
            extra += " reason=0x%02x" % self.reason
        if self.props:
            extra += " props=%r" % (self.props,)
        return "<%s%s>" % (self.name, extra)


# ---------------------------------------------------------------------------
# The raw client


class RawClient:
    """A socket speaking hand-built MQTT. version selects how incoming packets
    are decoded (properties exist only in 5)."""

    def __init__(self, port, version=4, host="127.0.0.1", timeout=5.0, transport=None, ws_path="/mqtt", **tls):
        self.version = version
        self.transport = transport or TRANSPORT
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.transport in ("tls", "wss"):
                self.sock = tls_wrap(self.sock, **tls)
            if self.transport in ("ws", "wss"):
                # MQTT over WebSocket: every send one binary frame (wsclient.py)
                self.sock = wsclient.WsSocket(self.sock, path=ws_path)
        except BaseException:
            self.sock.close()
            raise
        self.buf = bytearray()
        self.closed = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """send() that tolerates a peer which already closed (returns False)."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout("no packet within timeout")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise Timeout("no packet within timeout")
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                self.closed = True
                raise Closed("connection reset")
            except ssl.SSLError as e:  # close_notify, an alert, a truncated stream
                self.closed = True
                raise Closed("TLS: %s" % e)
            if not chunk:
                self.closed = True
                raise Closed("connection closed by peer")
            self.buf += chunk
            return

    def _frame(self):
        """Returns (type, flags, body) when buf holds a whole packet, else None."""
        if len(self.buf) < 2:
            return None
        mult, rl, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            rl += (b & 0x7F) * mult
            i += 1
            if not b & 0x80:
                break
            mult *= 128
            if i > 4:
                raise ValueError("peer sent an overlong remaining length")
        if len(self.buf) < i + rl:
            return None
        first = self.buf[0]
        body = bytes(self.buf[i:i + rl])
        del self.buf[:i + rl]
        return first >> 4, first & 0x0F, body

    def recv(self, timeout=5.0):
        """Reads exactly one packet. Raises Timeout or Closed."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._frame()
            if f is not None:
                return Packet(f[0], f[1], f[2], self.version)
            self._fill(deadline)

    def expect(self, ptype, timeout=5.0):
        p = self.recv(timeout)
        if p.type != ptype:
            raise ProtocolMismatch("expected %s, got %r" % (TYPE_NAMES[ptype], p))
        return p

    def recv_until_closed(self, timeout=5.0):
        """Reads packets until the peer closes; returns what arrived before.
        Raises Timeout if the connection stays open."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.recv(max(0.001, deadline - time.monotonic())))
            except Closed:
                return got

    def is_open(self, timeout=5.0):
        """Round-trips a PINGREQ: True when a PINGRESP comes back. Packets that
        arrive before it are kept in self.pending."""
        self.pending = []
        if not self.try_send(pingreq()):
            return False
        deadline = time.monotonic() + timeout
        try:
            while True:
                p = self.recv(max(0.001, deadline - time.monotonic()))
                if p.type == PINGRESP:
                    return True
                self.pending.append(p)
        except Closed:
            return False

    def publishes_until(self, marker_topic, timeout=5.0, ack=True):
        """PUBLISH packets received before the first one on marker_topic
        (consumed), acknowledging QoS 1/2 ones as they come when ack is set.
        Other packet types are kept in self.others."""
        got, self.others = [], []
        deadline = time.monotonic() + timeout
        while True:
            p = self.recv(max(0.001, deadline - time.monotonic()))
            if p.type != PUBLISH:
                self.others.append(p)
                if p.type == PUBREL and ack:
                    self.send(ack_packet(PUBCOMP, p.pid, self.version))
                continue
            if ack and p.qos == 1:
                self.send(ack_packet(PUBACK, p.pid, self.version))
            elif ack and p.qos == 2:
                self.send(ack_packet(PUBREC, p.pid, self.version))
            if p.topic == marker_topic:
                return got
            got.append(p)

    # -- conveniences -------------------------------------------------------

    def connect(self, client_id="", expect_reason=0, timeout=5.0, **kw):
        """Sends CONNECT (version from the client) and returns the CONNACK,
        asserting its reason code when expect_reason is not None."""
        kw.setdefault("version", self.version)
        self.send(connect(client_id, **kw))
        ack_ = self.expect(CONNACK, timeout)
        if expect_reason is not None:
            assert ack_.reason == expect_reason, "CONNACK %r, expected reason 0x%02x" % (ack_, expect_reason)
        return ack_

    def subscribe(self, pid, topics, props=None, timeout=5.0):
        self.send(subscribe(pid, topics, version=self.version, props=props))
        p = self.expect(SUBACK, timeout)
        assert p.pid == pid, "SUBACK for %s, sent %s" % (p.pid, pid)
        return p

    def unsubscribe(self, pid, topics, props=None, timeout=5.0):
        self.send(unsubscribe(pid, topics, version=self.version, props=props))
        p = self.expect(UNSUBACK, timeout)
        assert p.pid == pid
        return p

    def publish(self, topic, payload=b"", qos=0, retain=False, pid=None, props=None, timeout=5.0, dup=False):
        """Publishes and completes the QoS handshake; returns the last ack (or None)."""
        if qos and pid is None:
            pid = 1
        self.send(publish(topic, payload, qos=qos, retain=retain, dup=dup, pid=pid,
                          version=self.version, props=props))
        if qos == 1:
            p = self.expect(PUBACK, timeout)
            assert p.pid == pid
            return p
        if qos == 2:
            rec = self.expect(PUBREC, timeout)
            assert rec.pid == pid
            if rec.reason >= 0x80:
                return rec
            self.send(ack(PUBREL, pid, version=self.version))
            comp = self.expect(PUBCOMP, timeout)
            assert comp.pid == pid
            return comp
        return None

    def disconnect(self, reason=None, props=None):
        self.try_send(disconnect(reason, props, version=self.version))
        self.close()


def mqtt_connect(port, client_id="", version=4, **kw):
    """Opens a RawClient and completes CONNECT/CONNACK (reason 0 expected)."""
    c = RawClient(port, version=version)
    c.connect(client_id, **kw)
    return c
