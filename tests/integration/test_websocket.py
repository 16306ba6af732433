"""MQTT over WebSocket (ws and wss listeners, broker/transport_ws.c) with real
clients: paho (transport="websockets", and over TLS), MQTT.js (node-mqtt) over
ws and wss, messages crossing between a WebSocket client and a tcp client at
QoS 0, 1 and 2 both ways; then the protocol over raw sockets (wsclient.py):
the upgrade's refusals (404, 400, 405, 426, 431), a client stalling in the
upgrade, several packets in one frame, a packet over several frames, ping
and pong, the close handshake, unmasked and text frames, an oversize frame,
the configured path, the close frame at shutdown.

Every broker here listens with ws (or wss) whatever STARLING_TEST_TRANSPORT
says, beside the side tcp listener conftest.py gives ws brokers
(Broker.tcp_port)."""

import signal
import socket
import ssl
import struct
import subprocess
import time
import types

import pytest

import rawmqtt as r
import wsclient as ws
from clients import Client, uid
from conftest import STARLINGD, free_port
from test_node import run_node


def tcp_side(b):
    """A stand-in broker for clients.Client: b's tcp side listener."""
    return types.SimpleNamespace(host=b.host, port=b.tcp_port, transport="tcp", cafile=None,
                                 auth=getattr(b, "auth", None))


def tls_ctx(b):
    return ssl.create_default_context(cafile=b.cafile)


def raw_socket(b, timeout=5.0):
    s = socket.create_connection((b.host, b.port), timeout=timeout)
    if b.transport == "wss":
        s = tls_ctx(b).wrap_socket(s, server_hostname="localhost")
    return s


def refusal(b, request):
    """Sends request bytes; returns (status, headers, body) of the answer,
    after checking the broker then closes the connection."""
    s = raw_socket(b)
    try:
        s.sendall(request)
        status, headers, rest = ws.read_response(s)
        body = rest
        s.settimeout(5)
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            body += chunk
        return status, headers, body
    finally:
        s.close()


def ws_open(b, **kw):
    return ws.connect(b.port, tls=tls_ctx(b) if b.transport == "wss" else None, **kw)


def over(sock, version=4):
    """A RawClient reading MQTT packets from an open WsSocket."""
    c = r.RawClient.__new__(r.RawClient)
    c.version, c.transport, c.sock, c.buf, c.closed = version, "ws", sock, bytearray(), False
    return c


def mqtt_connect(sock, cid, version=4):
    sock.sendall(r.connect(cid, version=version))
    c = over(sock, version)
    ack = c.expect(r.CONNACK)
    assert ack.reason == 0
    return c


@pytest.fixture(params=["ws", "wss"])
def wsb(request, start_broker):
    return start_broker(transport=request.param)


@pytest.fixture
def wsb_plain(start_broker):
    return start_broker(transport="ws")


# --- real clients ---------------------------------------------------------------------


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", [4, 5])
def test_paho_websocket_crosses_with_tcp(wsb, qos, version):
    """paho over ws/wss and paho over tcp: each receives what the other
    publishes, in order, at the QoS asked for."""
    wsc = Client(wsb, version=version)
    tcp = Client(tcp_side(wsb), version=version)
    try:
        wsc.connect()
        tcp.connect()
        base = "ws/" + uid("t")
        wsc.subscribe(base + "/down", qos)
        tcp.subscribe(base + "/up", qos)
        for i in range(10):
            tcp.publish(base + "/down", b"down-%d" % i, qos=qos)
            wsc.publish(base + "/up", b"up-%d" % i, qos=qos)
        down = wsc.expect_messages(10)
        up = tcp.expect_messages(10)
        assert [m.payload for m in down] == [b"down-%d" % i for i in range(10)]
        assert [m.payload for m in up] == [b"up-%d" % i for i in range(10)]
        assert {m.qos for m in down} == {qos} and {m.qos for m in up} == {qos}
        # a payload larger than one read and wslay's 4 KiB buffer, both ways
        big = bytes(range(256)) * 1000
        tcp.publish(base + "/down", big, qos=qos)
        assert wsc.expect_message().payload == big
        wsc.publish(base + "/up", big, qos=qos)
        assert tcp.expect_message().payload == big
    finally:
        wsc.close()
        tcp.close()


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", [3, 4, 5])
def test_mqttjs_websocket_crosses_with_tcp(wsb, qos, version):
    """MQTT.js over ws/wss (subprotocol mqttv3.1 for 3.1, mqtt otherwise) and
    MQTT.js over tcp, messages both ways."""
    res = run_node("websocket.js", wsb, version=version, qos=qos, tcp_port=wsb.tcp_port)
    assert res["toWs"] == ["down-%d" % i for i in range(10)]
    assert res["toTcp"] == ["up-%d" % i for i in range(10)]
    assert set(res["qosWs"]) == {qos} and set(res["qosTcp"]) == {qos}


def test_subprotocol_chosen(wsb_plain):
    """The first subprotocol offered that the broker speaks is echoed."""
    for offer, chosen in (("mqtt", "mqtt"), ("mqttv3.1", "mqttv3.1"), ("chat, mqttv3.1, mqtt", "mqttv3.1")):
        s = ws_open(wsb_plain, protocol=offer)
        try:
            assert s.headers.get("sec-websocket-protocol") == chosen
        finally:
            s.close()
    # none offered: accepted without the header (as Mosquitto does)
    s = raw_socket(wsb_plain)
    try:
        s.sendall(ws.upgrade_request(protocol=None))
        status, headers, _ = ws.read_response(s)
        assert status == 101 and "sec-websocket-protocol" not in headers
    finally:
        s.close()


# --- the upgrade's refusals ------------------------------------------------------------


@pytest.mark.parametrize("name,request_kw,status", [
    ("wrong path", dict(path="/other"), 404),
    ("no upgrade header", dict(upgrade=None), 400),
    ("no connection upgrade", dict(connection="keep-alive"), 400),
    ("version 8", dict(version="8"), 426),
    ("no key", dict(key=None), 400),
    ("bad key", dict(key="not-base64!"), 400),
    ("unknown subprotocol only", dict(protocol="chat"), 400),
    ("POST", dict(method="POST"), 405),
])
def test_upgrade_refused(wsb, name, request_kw, status):
    got, headers, body = refusal(wsb, ws.upgrade_request(**request_kw))
    assert got == status, "%s: %d %r" % (name, got, body)
    assert headers.get("connection", "").lower() == "close"
    assert body.strip(), "the reason is in the body"
    if status == 426:
        assert headers.get("sec-websocket-version") == "13"
    assert "ws: " in wsb.log(), "the refusal is logged with its reason"


def test_plain_http_get_refused(wsb_plain):
    got, _, body = refusal(wsb_plain, b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got == 400
    assert b"Upgrade" in body


def test_mqtt_on_a_websocket_port_refused(wsb_plain):
    """A plain MQTT client on a ws port: its CONNECT is not an HTTP request."""
    got, _, _ = refusal(wsb_plain, r.connect("plain", version=4) + b"\r\n\r\n")
    assert got == 400


def test_oversize_upgrade_request(wsb_plain):
    """8 KiB of headers without their end: 431 and the connection closes."""
    req = b"GET /mqtt HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 100) for i in range(100))
    got, _, body = refusal(wsb_plain, req)
    assert got == 431
    assert b"8192" in body


def test_stalled_upgrade_closed_after_connect_timeout(start_broker):
    b = start_broker(transport="ws", connect_timeout=1)
    s = raw_socket(b, timeout=10)
    try:
        t0 = time.monotonic()
        s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: webso")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - t0
    except ConnectionResetError:
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    assert 0.5 < elapsed < 5, "closed after %.2f s" % elapsed
    assert not data.startswith(b"HTTP/1.1 101")


def test_configured_path(start_broker):
    b = start_broker(transport="ws", ws_path="/ws/v1")
    s = ws.connect(b.port, path="/ws/v1")
    try:
        c = mqtt_connect(s, uid("path"))
        assert c.is_open()
    finally:
        s.close()
    got, _, _ = refusal(b, ws.upgrade_request(path="/mqtt"))
    assert got == 404
    b.ws_path = "/ws/v1"  # paho: ws_set_options(path=...)
    p = Client(b, version=4)
    try:
        p.connect()
        topic = "path/" + uid("t")
        p.subscribe(topic, 1)
        p.publish(topic, b"via /ws/v1", qos=1)
        assert p.expect_message().payload == b"via /ws/v1"
    finally:
        p.close()


def test_ws_path_needs_a_websocket_listener(tmp_path):
    """ws_path after a tcp listener: the start fails with one line."""
    p = subprocess.run([STARLINGD, "--data-dir", str(tmp_path / "d"), "--set", "listener=%d 127.0.0.1 tcp" % free_port(),
                        "--set", "ws_path=/x", "--set", "admin_listen=off",
                        "--set", "cluster_bind=127.0.0.1:%d" % free_port()],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert p.returncode != 0
    assert b"ws_path" in p.stderr
    p = subprocess.run([STARLINGD, "--data-dir", str(tmp_path / "d"), "--set", "listener=%d 127.0.0.1 ws" % free_port(),
                        "--set", "ws_path=mqtt", "--set", "admin_listen=off"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert p.returncode != 0
    assert b"ws_path" in p.stderr


# --- frames ------------------------------------------------------------------------------


def test_several_packets_in_one_frame(wsb):
    s = ws_open(wsb)
    try:
        cid = uid("batch")
        topic = "batch/" + cid
        s.sock.sendall(ws.frame(ws.BINARY, r.connect(cid, version=4) + r.subscribe(1, [(topic, 1)])
                                + r.publish(topic, b"one", qos=1, pid=2) + r.pingreq()))
        c = over(s)
        got = [c.recv() for _ in range(5)]
        types_ = sorted(p.type for p in got)
        assert types_ == sorted([r.CONNACK, r.SUBACK, r.PUBACK, r.PUBLISH, r.PINGRESP])
        pub = [p for p in got if p.type == r.PUBLISH][0]
        assert pub.payload == b"one"
    finally:
        s.close()


def test_one_packet_over_several_frames(wsb):
    s = ws_open(wsb)
    try:
        c = mqtt_connect(s, uid("split"))
        topic = "split/" + uid("t")
        s.sendall(r.subscribe(1, [(topic, 0)]))
        c.expect(r.SUBACK)
        pkt = r.publish(topic, b"x" * 300)
        # a message of four fragments (binary + continuations), a ping between
        s.sock.sendall(ws.frame(ws.BINARY, pkt[:1], fin=False) + ws.frame(ws.CONT, pkt[1:2], fin=False)
                       + ws.frame(ws.PING, b"between") + ws.frame(ws.CONT, pkt[2:150], fin=False)
                       + ws.frame(ws.CONT, pkt[150:], fin=True))
        # and three whole messages holding one packet between them
        pkt2 = r.publish(topic, b"second")
        s.sock.sendall(ws.frame(ws.BINARY, pkt2[:3]) + ws.frame(ws.BINARY, pkt2[3:7]) + ws.frame(ws.BINARY, pkt2[7:]))
        assert c.expect(r.PUBLISH).payload == b"x" * 300
        assert c.expect(r.PUBLISH).payload == b"second"
        assert s.pongs == [b"between"]
    finally:
        s.close()


def test_ping_gets_pong(wsb):
    s = ws_open(wsb)
    try:
        payload = bytes(range(125))
        s.sock.sendall(ws.frame(ws.PING, payload))
        fin, op, got = s.read_frame()
        assert (fin, op, got) == (True, ws.PONG, payload)
        s.sock.sendall(ws.frame(ws.PING, b""))
        assert s.read_frame() == (True, ws.PONG, b"")
    finally:
        s.close()


def test_close_handshake(wsb):
    """The client's close frame is echoed with its status, then the broker
    closes the connection; the session ends as a network close (the will
    goes)."""
    watcher = Client(tcp_side(wsb), version=4)
    s = ws_open(wsb)
    try:
        watcher.connect()
        topic = "will/" + uid("t")
        watcher.subscribe(topic, 0)
        s.sendall(r.connect(uid("closer"), version=4, will={"topic": topic, "payload": b"gone"}))
        over(s).expect(r.CONNACK)
        s.sock.sendall(ws.frame(ws.CLOSE, struct.pack("!H", 1000) + b"bye"))
        assert s.read_frame() == (True, ws.CLOSE, struct.pack("!H", 1000))
        with pytest.raises(EOFError):
            s.read_frame()
        assert watcher.expect_message().payload == b"gone"
    finally:
        s.close()
        watcher.close()


@pytest.mark.parametrize("name,raw,code", [
    ("unmasked frame", ws.frame(ws.BINARY, r.pingreq(), mask=False), 1002),
    ("text frame", ws.frame(ws.TEXT, b"hello"), 1003),
    ("reserved bit", ws.frame(ws.BINARY, r.pingreq(), rsv=4), 1002),
    ("continuation without a message", ws.frame(ws.CONT, r.pingreq()), 1002),
    ("reserved opcode", ws.frame(0x3, b"x"), 1002),
])
def test_bad_frame_closed(wsb, name, raw, code):
    s = ws_open(wsb)
    try:
        c = mqtt_connect(s, uid("bad"))
        s.sock.sendall(raw)
        fin, op, payload = s.read_frame()
        assert op == ws.CLOSE, name
        assert struct.unpack("!H", payload[:2])[0] == code, name
        with pytest.raises((EOFError, ConnectionResetError)):
            s.read_frame()
        assert "ws: close %d" % code in wsb.log()
        assert c.closed is False  # the MQTT session was open until the bad frame
    finally:
        s.close()


def test_oversize_frame(start_broker):
    """A CONNECT above max_packet_size in one frame: the v5 client reads
    CONNACK 0x95 as over tcp, then the close frame says 1009."""
    b = start_broker(transport="ws", max_packet_size=2000)
    s = ws.connect(b.port)
    try:
        s.sock.sendall(ws.frame(ws.BINARY, r.connect(uid("big"), version=5, username="u" * 4000)))
        c = over(s, 5)
        ack = c.expect(r.CONNACK)
        assert ack.reason == 0x95
        with pytest.raises(r.Closed):
            c.recv()
        assert s.close_code == 1009
    finally:
        s.close()


def test_shutdown_says_going_away(start_broker):
    b = start_broker(transport="ws")
    s = ws.connect(b.port)
    try:
        mqtt_connect(s, uid("bye"))
        b.proc.send_signal(signal.SIGTERM)
        frames = []
        while True:
            try:
                frames.append(s.read_frame(timeout=10))
            except EOFError:
                break
        closes = [f for f in frames if f[1] == ws.CLOSE]
        assert len(closes) == 1 and struct.unpack("!H", closes[0][2][:2])[0] == 1001, frames
        assert b.proc.wait(timeout=10) == 0
        b.proc = None  # stopped here on purpose: nothing for the teardown to stop
    finally:
        s.close()
