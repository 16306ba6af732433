"""MQTT 5 enhanced authentication with SCRAM-SHA-256 (docs/auth.md): the
exchange over CONNECT / AUTH / CONNACK with a SCRAM client written here from
RFC 5802 (the server's signature checked too), refusals (wrong password,
unknown user, a user known only by a $7$ hash, other methods, channel
binding, malformed messages, packets out of turn, the connect timeout),
re-authentication, and require_clientid_username."""

import base64
import hashlib
import hmac
import os
import re
import subprocess
import time

import pytest

import rawmqtt
from clients import uid

pytestmark = pytest.mark.skipif(os.environ.get("STARLING_TEST_BROKER", "starling") == "mosquitto",
                                reason="Starling's own enhanced authentication")
pytestmark = [pytestmark, pytest.mark.own_auth]  # its own users and files (authmode.py)

METHOD = "SCRAM-SHA-256"


def b64(b):
    return base64.b64encode(b).decode()


def scram_line(user, password, iterations=4096, salt=None):
    """A password-file line with SCRAM-SHA-256 credentials (RFC 5802 section 3)."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return "%s:$scram-sha-256$%d$%s$%s$%s\n" % (user, iterations, b64(salt), b64(hashlib.sha256(client_key).digest()),
                                                b64(server_key))


class Scram:
    """The client side of one SCRAM-SHA-256 exchange."""

    def __init__(self, user, password, nonce=None):
        self.user, self.password = user, password
        self.nonce = nonce or b64(os.urandom(18))
        name = user.replace("=", "=3D").replace(",", "=2C")
        self.bare = "n=%s,r=%s" % (name, self.nonce)
        self.server_sig = None

    def first(self, gs2="n,,"):
        return (gs2 + self.bare).encode()

    def final(self, server_first, tamper=False):
        sf = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        assert attrs["r"].startswith(self.nonce) and len(attrs["r"]) > len(self.nonce), sf
        salt, it = base64.b64decode(attrs["s"]), int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, it)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        without_proof = "c=biws,r=" + attrs["r"]
        auth_msg = ",".join([self.bare, sf, without_proof]).encode()
        sig = hmac.new(stored, auth_msg, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        if tamper:
            proof = bytes([proof[0] ^ 1]) + proof[1:]
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.server_sig = hmac.new(server_key, auth_msg, "sha256").digest()
        return (without_proof + ",p=" + b64(proof)).encode()

    def verify(self, server_final):
        assert server_final.decode() == "v=" + b64(self.server_sig), server_final


def auth_packet(reason, method=METHOD, data=None):
    props = {}
    if method is not None:
        props["AuthenticationMethod"] = method
    if data is not None:
        props["AuthenticationData"] = data
    return rawmqtt.packet(rawmqtt.AUTH, 0, bytes([reason]) + rawmqtt.properties(props))


USERS = {"sam": "sam pw", "eve": "eve-pw"}


@pytest.fixture
def pwfile(tmp_path):
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "alice", "alice-pw"], check=True, capture_output=True)
    with open(path, "a") as f:
        for user, pw in USERS.items():
            f.write(scram_line(user, pw))
    return path


@pytest.fixture
def broker(start_broker, pwfile):
    return start_broker(probe=("alice", "alice-pw"), password_file=str(pwfile), connect_timeout=3)


def scram_connect(b, user, password, client_id=None, tamper=False, username=None):
    """CONNECT with SCRAM; returns (client, CONNACK, Scram)."""
    c = rawmqtt.RawClient(b.port, version=5)
    s = Scram(user, password)
    c.send(rawmqtt.connect(client_id or uid(), version=5, username=username,
                           props={"AuthenticationMethod": METHOD, "AuthenticationData": s.first()}))
    p = c.recv()
    if p.type == rawmqtt.CONNACK:
        return c, p, s
    assert p.type == rawmqtt.AUTH and p.reason == 0x18, p
    assert p.props["AuthenticationMethod"] == METHOD
    c.send(auth_packet(0x18, data=s.final(p.props["AuthenticationData"], tamper=tamper)))
    return c, c.expect(rawmqtt.CONNACK), s


def test_scram_connect_and_use(broker):
    c, ack, s = scram_connect(broker, "sam", USERS["sam"])
    with c:
        assert ack.reason == 0, ack
        assert ack.props["AuthenticationMethod"] == METHOD
        s.verify(ack.props["AuthenticationData"])
        topic = "t/" + uid()
        c.subscribe(1, [(topic, 0)])
        c.publish(topic, b"hello")
        got = c.expect(rawmqtt.PUBLISH)
        assert (got.topic, got.payload) == (topic, b"hello")


def test_scram_user_name_in_log_and_session(broker):
    c, ack, _ = scram_connect(broker, "eve", USERS["eve"], client_id="eve-1")
    with c:
        assert ack.reason == 0
        deadline = time.monotonic() + 5
        while "username=eve" not in broker.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert re.search(r"connected \(v5.*username=eve", broker.log())
        # the session belongs to eve: another user cannot take its client id
        with rawmqtt.RawClient(broker.port, version=5) as o:
            o.connect("eve-1", username="alice", password="alice-pw", expect_reason=0x87)
        c.send(rawmqtt.pingreq())
        c.expect(rawmqtt.PINGRESP)


@pytest.mark.parametrize("user,password", [("sam", "wrong"), ("nobody", "x"), ("alice", "alice-pw")])
def test_scram_refused_0x86(broker, user, password):
    # a wrong password, an unknown user, a user known by a $7$ hash only: the same answer
    c, ack, _ = scram_connect(broker, user, password)
    with c:
        assert ack.reason == 0x86, ack
        assert "AuthenticationData" not in ack.props
        c.recv_until_closed()


def test_scram_tampered_proof(broker):
    c, ack, _ = scram_connect(broker, "sam", USERS["sam"], tamper=True)
    with c:
        assert ack.reason == 0x86


def server_first_of(b, user):
    with rawmqtt.RawClient(b.port, version=5) as c:
        s = Scram(user, "x")
        c.send(rawmqtt.connect(uid(), version=5, props={"AuthenticationMethod": METHOD,
                                                          "AuthenticationData": s.first()}))
        p = c.expect(rawmqtt.AUTH)
        attrs = dict(kv.split("=", 1) for kv in p.props["AuthenticationData"].decode().split(","))
        return attrs


def test_unknown_user_gets_a_stable_fake_salt(broker):
    a, b2, other, known = (server_first_of(broker, "ghost"), server_first_of(broker, "ghost"),
                           server_first_of(broker, "ghost2"), server_first_of(broker, "sam"))
    assert a["s"] == b2["s"] and a["i"] == b2["i"] == "4096"
    assert a["s"] != other["s"]
    assert len(base64.b64decode(a["s"])) == len(base64.b64decode(known["s"])) == 16
    assert a["r"] != b2["r"]  # fresh server nonces


def test_plain_password_of_a_scram_user(broker):
    with rawmqtt.RawClient(broker.port, version=5) as c:
        c.connect(uid(), username="sam", password=USERS["sam"])
    with rawmqtt.RawClient(broker.port, version=4) as c:
        c.connect(uid()[:20], username="sam", password="nope", expect_reason=4)


def test_user_name_must_match(broker):
    c, ack, _ = scram_connect(broker, "sam", USERS["sam"], username="eve")
    with c:
        assert ack.reason == 0x86


def test_unknown_method_0x8c(broker):
    with rawmqtt.RawClient(broker.port, version=5) as c:
        c.connect(uid(), props={"AuthenticationMethod": "SCRAM-SHA-1", "AuthenticationData": b"n,,n=sam,r=abc"},
                  expect_reason=0x8C)


def test_data_without_method_0x82(broker):
    with rawmqtt.RawClient(broker.port, version=5) as c:
        c.connect(uid(), props={"AuthenticationData": b"n,,n=sam,r=abc"}, expect_reason=0x82)


@pytest.mark.parametrize("first,want", [
    (b"p=tls-unique,,n=sam,r=abc", 0x8C),   # channel binding asked for
    (b"y,,n=sam,r=abc", 0x8C),
    (b"n,a=sam,n=sam,r=abc", 0x8C),         # authzid
    (b"n,,r=abc", 0x86),                    # no user
    (b"n,,n=sam", 0x86),                    # no nonce
    (b"garbage", 0x86),
    (b"", 0x86),
    (b"n,,n=sam,r=" + b"a" * 2000, 0x86),   # over the size limit
])
def test_bad_client_first(broker, first, want):
    with rawmqtt.RawClient(broker.port, version=5) as c:
        c.connect(uid(), props={"AuthenticationMethod": METHOD, "AuthenticationData": first}, expect_reason=want)


def started(b):
    c = rawmqtt.RawClient(b.port, version=5)
    s = Scram("sam", USERS["sam"])
    c.send(rawmqtt.connect(uid(), version=5, props={"AuthenticationMethod": METHOD, "AuthenticationData": s.first()}))
    p = c.expect(rawmqtt.AUTH)
    return c, s, p.props["AuthenticationData"]


def test_packets_out_of_turn_during_exchange(broker):
    c, _, _ = started(broker)
    with c:
        c.send(rawmqtt.publish("t", b"x", version=5))
        assert c.expect(rawmqtt.CONNACK).reason == 0x82
        c.recv_until_closed()
    c, s, sf = started(broker)
    with c:
        c.send(auth_packet(0x18, method="PLAIN", data=s.final(sf)))
        assert c.expect(rawmqtt.CONNACK).reason == 0x82
    c, s, sf = started(broker)
    with c:
        c.send(auth_packet(0x19, data=s.final(sf)))
        assert c.expect(rawmqtt.CONNACK).reason == 0x82
    c, s, sf = started(broker)
    with c:
        c.send(auth_packet(0x18, data=b"c=biws,r=nope,p=" + b64(b"x" * 32).encode()))
        assert c.expect(rawmqtt.CONNACK).reason == 0x86


def test_exchange_times_out(broker):
    c, _, _ = started(broker)
    with c:
        t0 = time.monotonic()
        c.recv_until_closed(timeout=10)
        assert time.monotonic() - t0 < 8
    assert "authentication not completed within 3 s" in broker.log()


def reauth(c, user, password, tamper=False, method=METHOD):
    s = Scram(user, password)
    c.send(auth_packet(0x19, method=method, data=s.first()))
    p = c.recv()
    if p.type != rawmqtt.AUTH:
        return p, s
    assert p.reason == 0x18, p
    c.send(auth_packet(0x18, data=s.final(p.props["AuthenticationData"], tamper=tamper)))
    return c.recv(), s


def test_reauthentication(broker):
    c, ack, _ = scram_connect(broker, "sam", USERS["sam"])
    with c:
        assert ack.reason == 0
        for _ in range(2):
            p, s = reauth(c, "sam", USERS["sam"])
            assert p.type == rawmqtt.AUTH and p.reason == 0x00, p
            s.verify(p.props["AuthenticationData"])
        # the connection works on
        c.send(rawmqtt.pingreq())
        c.expect(rawmqtt.PINGRESP)
        p, _ = reauth(c, "sam", "wrong")
        assert p.type == rawmqtt.DISCONNECT and p.reason == 0x86, p
        c.recv_until_closed()
    assert "re-authentication failed: wrong proof" in broker.log()


def test_reauthentication_refusals(broker):
    c, ack, _ = scram_connect(broker, "sam", USERS["sam"])
    with c:
        p, _ = reauth(c, "sam", USERS["sam"], method="PLAIN")
        assert p.type == rawmqtt.DISCONNECT and p.reason == 0x82, p
    c, ack, _ = scram_connect(broker, "sam", USERS["sam"])
    with c:
        p, _ = reauth(c, "eve", USERS["eve"])  # another user, with the right password
        assert p.type == rawmqtt.DISCONNECT and p.reason == 0x86, p
    c, ack, _ = scram_connect(broker, "sam", USERS["sam"])
    with c:
        c.send(auth_packet(0x18, data=b"c=biws,r=x,p=" + b64(b"x" * 32).encode()))  # no exchange under way
        p = c.recv()
        assert p.type == rawmqtt.DISCONNECT and p.reason == 0x82, p
    # a connection that authenticated with a password
    with rawmqtt.RawClient(broker.port, version=5) as c:
        c.connect(uid(), username="sam", password=USERS["sam"])
        p, _ = reauth(c, "sam", USERS["sam"])
        assert p.type == rawmqtt.DISCONNECT and p.reason == 0x82, p


# --- require_clientid_username ------------------------------------------------------


@pytest.fixture
def bound(start_broker, pwfile):
    return start_broker(password_file=str(pwfile), require_clientid_username="true",
                        allow_anonymous="true")


@pytest.mark.parametrize("client_id,want", [("alice", 0), ("alice:phone", 0), ("alice:", 0), ("alicex", 0x85),
                                            ("bob", 0x85), ("alic", 0x85), ("x-alice", 0x85)])
def test_clientid_bound_v5(bound, client_id, want):
    with rawmqtt.RawClient(bound.port, version=5) as c:
        c.connect(client_id, username="alice", password="alice-pw", expect_reason=want)


def test_clientid_bound_v3_and_others(bound):
    with rawmqtt.RawClient(bound.port, version=4) as c:
        c.connect("bob:1", username="alice", password="alice-pw", expect_reason=2)
    with rawmqtt.RawClient(bound.port, version=4) as c:
        c.connect("alice:1", username="alice", password="alice-pw", expect_reason=0)
    # an id the server assigns is the client's own
    with rawmqtt.RawClient(bound.port, version=5) as c:
        ack = c.connect("", username="alice", password="alice-pw")
        assert ack.props["AssignedClientIdentifier"].startswith("auto-")
    # anonymous clients have no name to be bound to
    with rawmqtt.RawClient(bound.port, version=5) as c:
        c.connect(uid())
    # the SCRAM user is the name
    c, ack, _ = scram_connect(bound, "sam", USERS["sam"], client_id="sam:x")
    with c:
        assert ack.reason == 0
    c, ack, _ = scram_connect(bound, "sam", USERS["sam"], client_id="eve:x")
    with c:
        assert ack.reason == 0x85
    assert "require_clientid_username" in bound.log()


def test_mqttjs_scram(broker):
    from test_node import run_node
    if broker.transport != "tcp":
        pytest.skip("the script speaks tcp")
    r = run_node("scram.js", broker, user="sam", password=USERS["sam"])
    assert r["reason"] == 0 and r["method"] == METHOD and r["signatureOk"], r
    assert r["payloads"] == ["hello"]
    assert r["refused"] == 0x86, r
