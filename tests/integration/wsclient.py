"""A minimal WebSocket client (RFC 6455) for the raw MQTT client and the
WebSocket tests: the HTTP upgrade, masked frames out, frames in (binary
payloads joined into one byte stream, a ping answered with a pong, a close
frame echoed and then read as the end of the stream). Written from the RFC;
it checks what the server sends (no mask, no reserved bits, the accept key)
so that the tests read the broker's frames, not a library's view of them.

WsSocket looks enough like a socket (sendall, send, recv, settimeout,
setsockopt, setblocking, close) for rawmqtt.RawClient to run over it."""

import base64
import hashlib
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_FRAME = 65536
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeError(ConnectionError):
    """The server did not answer the upgrade with a valid 101 (an OSError,
    as a refused connection is, so that callers retrying connections retry)."""

    def __init__(self, msg, status=None, headers=None, body=b""):
        super().__init__(msg)
        self.status = status
        self.headers = headers or {}
        self.body = body


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, key=None):
    """One frame as a client sends it (masked unless mask=False)."""
    payload = bytes(payload)
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = key or os.urandom(4)
    masked = bytes(c ^ key[i % 4] for i, c in enumerate(payload)) if n < 4096 else _mask_fast(payload, key)
    return head + key + masked


def _mask_fast(payload, key):
    k = int.from_bytes((key * ((len(payload) + 3) // 4))[:len(payload)], "big")
    return (int.from_bytes(payload, "big") ^ k).to_bytes(len(payload), "big")


def upgrade_request(path="/mqtt", host="127.0.0.1", key="random", protocol="mqtt", version="13",
                    upgrade="websocket", connection="Upgrade", method="GET", extra=()):
    """The HTTP request bytes; a None field leaves its header out; key
    "random" is a fresh one."""
    key = base64.b64encode(os.urandom(16)).decode() if key == "random" else key
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    for name, value in (("Upgrade", upgrade), ("Connection", connection), ("Sec-WebSocket-Key", key),
                        ("Sec-WebSocket-Version", version), ("Sec-WebSocket-Protocol", protocol)):
        if value is not None:
            lines.append("%s: %s" % (name, value))
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock, limit=65536):
    """(status, {lower-case name: value}, body bytes so far, bytes after the
    headers) of an HTTP response; the body is what arrived until the server
    closed or Content-Length was met."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise HandshakeError("connection closed before the response's headers (%r)" % data[:200])
        data += chunk
        if len(data) > limit:
            raise HandshakeError("response headers above %d bytes" % limit)
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


class WsSocket:
    """A WebSocket over a connected socket (plain or TLS): upgrades at once,
    then carries a byte stream in binary frames."""

    def __init__(self, sock, path="/mqtt", protocol="mqtt", host="127.0.0.1"):
        self.sock = sock
        self.raw = bytearray()     # bytes read, not yet parsed into frames
        self.data = bytearray()    # binary payloads not yet returned by recv
        self.out = bytearray()     # frame bytes a non-blocking send() has not written yet
        self.eof = False
        self.close_code = None     # the status of the server's close frame (0: none)
        self.pongs = []
        key = base64.b64encode(os.urandom(16))
        sock.sendall(upgrade_request(path, host, key.decode(), protocol))
        status, headers, rest = read_response(sock)
        if status != 101:
            raise HandshakeError("upgrade refused: %d" % status, status, headers, rest)
        if headers.get("sec-websocket-accept", "").encode() != accept_key(key):
            raise HandshakeError("wrong Sec-WebSocket-Accept", status, headers)
        if protocol and headers.get("sec-websocket-protocol") not in protocol.replace(" ", "").split(","):
            raise HandshakeError("no subprotocol chosen among %r" % protocol, status, headers)
        self.headers = headers
        self.raw += rest

    # -- the socket interface RawClient uses ---------------------------------

    def settimeout(self, t):
        self.sock.settimeout(t)

    def setblocking(self, flag):
        self.sock.setblocking(flag)

    def setsockopt(self, *a):
        self.sock.setsockopt(*a)

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()

    def sendall(self, data):
        """data in binary frames of at most MAX_FRAME bytes (a batch of
        packets larger than the broker's frame limit is split as a client's
        writes would be; packets then span frames)."""
        data = bytes(data)
        out = b"".join(frame(BINARY, data[i:i + MAX_FRAME]) for i in range(0, max(len(data), 1), MAX_FRAME))
        self.sock.sendall(out)

    def send(self, data):
        """Non-blocking use: data becomes one frame kept here until written;
        BlockingIOError while an earlier frame is not yet out."""
        if self.out:
            n = self.sock.send(self.out)
            del self.out[:n]
            if self.out:
                raise BlockingIOError()
        self.out += frame(BINARY, data)
        try:
            n = self.sock.send(self.out)
            del self.out[:n]
        except BlockingIOError:
            pass
        return len(data)

    def recv(self, n):
        while not self.data:
            if self.eof:
                return b""
            if self._frame():
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                self.eof = True
                return b""
            self.raw += chunk
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    # -- frames in -------------------------------------------------------------

    def next_frame(self):
        """(fin, opcode, payload) of the next whole server frame in raw, or None."""
        r = self.raw
        if len(r) < 2:
            return None
        b0, b1 = r[0], r[1]
        if b1 & 0x80:
            raise AssertionError("the server masked a frame")
        if b0 & 0x70:
            raise AssertionError("the server set reserved bits")
        n, h = b1 & 0x7F, 2
        if n == 126:
            if len(r) < 4:
                return None
            n, h = struct.unpack("!H", r[2:4])[0], 4
        elif n == 127:
            if len(r) < 10:
                return None
            n, h = struct.unpack("!Q", r[2:10])[0], 10
        if len(r) < h + n:
            return None
        payload = bytes(r[h:h + n])
        del r[:h + n]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def _frame(self):
        f = self.next_frame()
        if f is None:
            return False
        _fin, op, payload = f
        if op in (BINARY, CONT):
            self.data += payload
        elif op == PING:
            self.sock.sendall(frame(PONG, payload))
        elif op == PONG:
            self.pongs.append(payload)
        elif op == CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
            try:
                self.sock.sendall(frame(CLOSE, payload[:2]))
            except OSError:
                pass
            self.eof = True
        else:
            raise AssertionError("unexpected opcode %d from the server" % op)
        return True

    def read_frame(self, timeout=5.0):
        """The next server frame as (fin, opcode, payload), whatever it is
        (nothing is answered); raises socket.timeout, or EOFError on close."""
        self.sock.settimeout(timeout)
        while True:
            f = self.next_frame()
            if f is not None:
                return f
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.raw += chunk


def connect(port, host="127.0.0.1", path="/mqtt", protocol="mqtt", timeout=5.0, tls=None):
    """A WsSocket to host:port; tls: an ssl.SSLContext for wss."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        return WsSocket(sock, path, protocol, host)
    except BaseException:
        sock.close()
        raise
