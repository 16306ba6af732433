"""starling-bench --ws (and --ws -S) against a WebSocket front written here:
a loopback proxy that answers the upgrade (RFC 6455), unmasks the client's
frames into a TCP connection to a private Mosquitto, and sends Mosquitto's
bytes back split into a fragment and a continuation, with a ping between
messages. It checks what starling-bench sends (every frame masked, the path,
the subprotocol, pongs) and counts what arrives; refused upgrades must fail
the run with the reason.

Run: /usr/bin/python3 -m pytest tests/integration/test_bench_ws.py
"""

import base64
import hashlib
import socket
import ssl
import struct
import threading

import pytest

from bench_helpers import Bench, Mosquitto, Starlingd, bench_binary, free_port, run  # noqa: F401 (fixture)
from devcerts import certs  # noqa: F401 (fixture)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def server_frame(opcode, payload, fin=True):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


class WSProxy:
    """WebSocket in front of a TCP MQTT broker. answer: None for a proper 101,
    else the bytes answered to the upgrade (then the connection closes)."""

    def __init__(self, target_port, tls=None, answer=None):
        self.target_port = target_port
        self.answer = answer
        self.tls = tls
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.unmasked = 0   # client frames without a mask (a violation)
        self.frames = 0
        self.pongs = 0
        self.pings = 0
        self.lock = threading.Lock()
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _handle(self, c):
        try:
            if self.tls:
                c = self.tls.wrap_socket(c, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = c.recv(4096)
                if not chunk:
                    return
                head += chunk
            head, rest = head.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
            with self.lock:
                self.requests.append((lines[0], headers))
            if self.answer is not None:
                c.sendall(self.answer)
                return
            accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            b = socket.create_connection(("127.0.0.1", self.target_port))
            send_lock = threading.Lock()
            threading.Thread(target=self._down, args=(b, c, send_lock), daemon=True).start()
            self._up(c, b, rest, send_lock)
        except (OSError, EOFError, ssl.SSLError, ValueError, KeyError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _up(self, c, b, buffered, send_lock):
        """Client frames, unmasked, to the broker."""
        class Reader:
            def __init__(self, sock, pre):
                self.sock, self.pre = sock, pre

            def read(self, n):
                if len(self.pre) >= n:
                    out, self.pre = self.pre[:n], self.pre[n:]
                    return out
                out, self.pre = self.pre, b""
                return out + recv_exact(self.sock, n - len(out))
        r = Reader(c, buffered)
        while True:
            b0, b1 = r.read(2)
            n = b1 & 0x7f
            if n == 126:
                n = struct.unpack(">H", r.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", r.read(8))[0]
            mask = r.read(4) if b1 & 0x80 else None
            payload = r.read(n)
            with self.lock:
                self.frames += 1
                if mask is None:
                    self.unmasked += 1
            if mask:
                payload = bytes(x ^ mask[i % 4] for i, x in enumerate(payload))
            op = b0 & 0x0f
            if op == 10:
                with self.lock:
                    self.pongs += 1
            elif op == 8:
                b.close()
                return
            elif op in (0, 2):
                b.sendall(payload)

    def _down(self, b, c, send_lock):
        """Broker bytes to the client: a fragment and its continuation, a ping
        before every other chunk."""
        try:
            while True:
                data = b.recv(65536)
                if not data:
                    c.sendall(server_frame(8, struct.pack(">H", 1000)))
                    return
                with self.lock:
                    self.pings += 1
                    ping = self.pings % 2 == 1
                if ping:
                    c.sendall(server_frame(9, b"hi"))
                half = len(data) // 2
                c.sendall(server_frame(2, data[:half], fin=False) + server_frame(0, data[half:]))
        except OSError:
            pass

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.fixture
def mosq(tmp_path):
    m = Mosquitto(tmp_path, ["allow_anonymous true", "max_queued_messages 100000"])
    yield m
    m.stop()


def test_pub_sub_over_websocket(mosq):
    proxy = WSProxy(mosq.port)
    try:
        hp = ["-h", "127.0.0.1", "-p", proxy.port, "--ws"]
        sub = Bench("sub", *hp, "-c", 2, "-t", "ws/#", "-q", 1, "-L", 2000, "-d", 60, "--json")
        sub.wait_ready()
        pub = run("pub", *hp, "-c", 2, "-i", 0, "-I", 0, "-q", 1, "-F", 5, "-t", "ws/%i", "--limit-per-client",
                  500, "--json")
        assert pub.returncode == 0, pub.stderr
        assert pub.json()["publish"]["acked"] == 1000
        sub.finish()
        assert sub.returncode == 0, sub.stderr
        assert sub.json()["receive"]["count"] == 2000
        line, headers = proxy.requests[0]
        assert line == "GET /mqtt HTTP/1.1"
        assert headers["sec-websocket-protocol"] == "mqtt"
        assert headers["host"] == "127.0.0.1:%d" % proxy.port
        assert proxy.frames > 0 and proxy.unmasked == 0, "every client frame is masked"
        assert proxy.pongs > 0, "pings are answered"
    finally:
        proxy.close()


def test_websocket_over_tls(mosq, certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs / "server.crt"), str(certs / "server.key"))
    proxy = WSProxy(mosq.port, tls=ctx)
    try:
        r = run("conn", "--ws", "-S", "--cacertfile", certs / "ca.crt", "-h", "localhost", "-p", proxy.port,
                "-c", 5, "-i", 0, "-d", 1, "--json")
        assert r.returncode == 0, r.stderr
        assert r.json()["connect"]["connected"] == 5
        assert proxy.requests and proxy.requests[0][1]["host"] == "localhost:%d" % proxy.port
    finally:
        proxy.close()


@pytest.mark.parametrize("answer,message", [
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "WebSocket upgrade refused: HTTP/1.1 404 Not Found"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n", "Sec-WebSocket-Accept"),
])
def test_refused_upgrade_fails_the_run(answer, message):
    proxy = WSProxy(1, answer=answer)
    try:
        r = run("conn", "--ws", "-h", "127.0.0.1", "-p", proxy.port, "-c", 2, "-d", 3, "--connect-timeout", 3,
                "--json")
        assert r.returncode == 1
        j = r.json()
        assert j["connect"]["connected"] == 0
        assert any(e["error"] == "WS" for e in j["errors"]), j["errors"]
        assert message in r.stderr
    finally:
        proxy.close()


def test_ws_and_wss_against_starlingd(tmp_path, certs):
    """starlingd's own ws and wss listeners (skipped by a starlingd without
    them, which says so at start)."""
    ws, wss = free_port(), free_port()
    s = Starlingd(tmp_path, ["max_queued 100000", f"listener {ws} 127.0.0.1 ws", f"listener {wss} 127.0.0.1 wss",
                             f"certfile {certs / 'server.crt'}", f"keyfile {certs / 'server.key'}"])
    if not s.wait(ws) or not s.wait(wss):
        pytest.skip(f"starlingd has no WebSocket listeners: {s.unsupported}")
    try:
        sub = Bench("sub", "--ws", "-h", "127.0.0.1", "-p", ws, "-c", 1, "-t", "sw/#", "-q", 1, "-L", 1000,
                    "-d", 60, "--json")
        sub.wait_ready()
        pub = run("pub", "--ws", "-S", "--cacertfile", certs / "ca.crt", "-h", "localhost", "-p", wss, "-c", 2,
                  "-i", 0, "-I", 1, "-q", 1, "-F", 10, "-s", 2000, "-t", "sw/%i", "--limit-per-client", 500, "--json")
        assert pub.returncode == 0, pub.stderr
        sub.finish()
        assert sub.returncode == 0, sub.stderr
        assert sub.json()["receive"]["count"] == 1000
    finally:
        s.stop()
