"""Authentication and authorization (docs/auth.md): password files written by
the real mosquitto_passwd ($7$) and by hand with hashlib ($6$), ACL files in
Mosquitto's format, the CONNACK / PUBACK / PUBREC / SUBACK reason codes, what
a subscriber receives (live, retained, wills), patterns, the anonymous
section, session ownership, SIGHUP reloads, refused files at start, the delay
after repeated failures, and the allow_anonymous default."""

import base64
import hashlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

import rawmqtt
from clients import uid
from conftest import STARLINGD, free_port

pytestmark = pytest.mark.skipif(os.environ.get("STARLING_TEST_BROKER", "starling") == "mosquitto",
                                reason="Starling's own auth settings")
pytestmark = [pytestmark, pytest.mark.own_auth]  # its own users and files (authmode.py)

USERS = {"alice": "alice-pw", "bob": "bob pw:with colon", "admin": "admin-pw"}

ACL = """# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic readwrite public/#

user bob
topic read #
topic deny secret/#
topic write bob/#

user admin
topic readwrite #
topic readwrite $SYS/#

user carol
topic readwrite carol/#

pattern readwrite clients/%c/#
pattern read inbox/%u/#
"""


def passwd_file(path, users, sha512_users=None):
    """Writes path with the real mosquitto_passwd, then appends $6$ lines
    (sha512(password + salt), base64) made here."""
    first = True
    for user, pw in users.items():
        args = ["mosquitto_passwd"] + (["-c"] if first else []) + ["-b", str(path), user, pw]
        subprocess.run(args, check=True, capture_output=True)
        first = False
    if sha512_users:
        with open(path, "a") as f:
            for user, pw in sha512_users.items():
                salt = os.urandom(12)
                digest = hashlib.sha512(pw.encode() + salt).digest()
                f.write("%s:$6$%s$%s\n" % (user, base64.b64encode(salt).decode(), base64.b64encode(digest).decode()))
    return path


@pytest.fixture
def files(tmp_path):
    pw = passwd_file(tmp_path / "passwd", USERS, {"carol": "carol-pw"})
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return pw, acl


@pytest.fixture
def secured(start_broker, files):
    pw, acl = files
    return start_broker(probe=("admin", USERS["admin"]), password_file=str(pw), acl_file=str(acl))


def login(b, user, version=5, client_id=None, **kw):
    c = rawmqtt.RawClient(b.port, version=version)
    pw = USERS.get(user, "carol-pw" if user == "carol" else None)
    c.connect(client_id or uid(user), username=user, password=pw, **kw)
    return c


def wait_log(b, pattern, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, b.log()):
            return
        time.sleep(0.05)
    raise AssertionError("no log line matching %r" % pattern)


# --- CONNECT -----------------------------------------------------------------------


def test_connect_reason_codes_v5(secured):
    for user, pw, want in [("alice", USERS["alice"], 0x00), ("alice", "wrong", 0x86), ("nobody", "x", 0x86),
                           ("alice", None, 0x86), (None, None, 0x87), ("carol", "carol-pw", 0x00),
                           ("carol", "carol-pw2", 0x86), ("bob", USERS["bob"], 0x00)]:
        with rawmqtt.RawClient(secured.port, version=5) as c:
            ack = c.connect(uid(), username=user, password=pw, expect_reason=None)
            assert ack.reason == want, (user, pw, ack)
            if want:
                c.recv_until_closed()


@pytest.mark.parametrize("version", [3, 4])
def test_connect_return_codes_v3(secured, version):
    for user, pw, want in [("alice", USERS["alice"], 0), ("alice", "wrong", 0x04), (None, None, 0x05),
                           ("carol", "carol-pw", 0)]:
        with rawmqtt.RawClient(secured.port, version=version) as c:
            ack = c.connect(uid()[:20], username=user, password=pw, expect_reason=None)
            assert ack.reason == want, (version, user, ack)


def test_failures_logged_counted(secured):
    with rawmqtt.RawClient(secured.port, version=5) as c:
        c.connect(uid(), username="alice", password="nope", expect_reason=0x86)
    wait_log(secured, r"127\.0\.0\.1:\d+\] authentication failed: wrong password \(user \"alice\"\)")
    body = urllib.request.urlopen(secured.admin_url + "/metrics", timeout=5).read().decode()
    m = re.search(r"^starling_auth_failures_total (\d+)$", body, re.M)
    assert m and int(m.group(1)) >= 1, body


def test_mosquitto_clients_with_passwords(secured, tmp_path):
    topic = "alice/" + uid()
    sub = subprocess.Popen(["mosquitto_sub", *secured.cli_args(), "-u", "alice", "-P",
                            USERS["alice"], "-t", topic, "-C", "1", "-q", "1", "-W", "10", "-v"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the subscription is in place once a retained-less marker arrives: publish until it is seen
        deadline = time.monotonic() + 10
        while sub.poll() is None and time.monotonic() < deadline:
            subprocess.run(["mosquitto_pub", *secured.cli_args(), "-u", "admin", "-P",
                            USERS["admin"], "-t", topic, "-m", "hi", "-q", "1"], check=True, timeout=10)
            try:
                sub.wait(0.3)
            except subprocess.TimeoutExpired:
                pass
        out, err = sub.communicate(timeout=10)
        assert out.strip() == topic + " hi", (out, err)
    finally:
        if sub.poll() is None:
            sub.kill()
    bad = subprocess.run(["mosquitto_pub", *secured.cli_args(), "-u", "alice", "-P", "bad",
                          "-t", topic, "-m", "x"], capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0
    assert "not authorised" in (bad.stderr + bad.stdout).lower() or "bad user" in (bad.stderr + bad.stdout).lower()


def test_paho_v311_and_v5(secured, clients):
    c4 = clients(secured, version=4)
    c4.connect(username="carol", password="carol-pw")
    c5 = clients(secured, version=5)
    c5.connect(username="alice", password=USERS["alice"])
    bad = clients(secured, version=4)
    assert bad.connect(username="alice", password="x", expect_rc=None)[0] == 4
    bad5 = clients(secured, version=5)
    assert bad5.connect(username="alice", password="x", expect_rc=None)[0] == 0x86


# --- allow_anonymous ------------------------------------------------------------------


def run_starlingd(tmp_path, *args, wait=True):
    argv = [STARLINGD, "--data-dir", str(tmp_path / ("d%d" % free_port())), "--set",
            "cluster_bind=127.0.0.1:%d" % free_port(), "--set", "admin_listen=off"] + list(args)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_connack(port, version=4, timeout=20, **kw):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # its own node, with a plain tcp listener whatever the suite's transport
            with rawmqtt.RawClient(port, version=version, timeout=2, transport="tcp") as c:
                return c.connect(uid(), expect_reason=None, **kw)
        except (OSError, rawmqtt.Closed):
            time.sleep(0.05)
    raise AssertionError("no CONNACK")


def test_anonymous_allowed_on_loopback_by_default(broker):
    with rawmqtt.RawClient(broker.port, version=5) as c:
        c.connect(uid(), expect_reason=0)


def test_anonymous_refused_with_password_file(start_broker, files):
    pw, _ = files
    b = start_broker(probe=("alice", USERS["alice"]), password_file=str(pw))
    with rawmqtt.RawClient(b.port, version=4) as c:
        c.connect(uid(), expect_reason=0x05)
    b2 = start_broker(password_file=str(pw), allow_anonymous=True)
    with rawmqtt.RawClient(b2.port, version=4) as c:
        c.connect(uid(), expect_reason=0)
    with rawmqtt.RawClient(b2.port, version=4) as c:
        c.connect(uid(), username="alice", password="bad", expect_reason=0x04)


def off_loopback(tmp_path, version, *settings):
    """Starts a node bound to 0.0.0.0 (reached on 127.0.0.1 only), returns
    its first CONNACK to an anonymous client and its stderr after SIGTERM."""
    port = free_port()
    p = run_starlingd(tmp_path, "--bind", "0.0.0.0", "-p", str(port), *settings)
    try:
        ack = first_connack(port, version=version)
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
    return ack, err


def test_anonymous_refused_off_loopback_by_default(tmp_path):
    ack, err = off_loopback(tmp_path, 5)
    assert ack.reason == 0x87
    assert "anonymous clients are refused" in err and "0.0.0.0" in err, err


def test_allow_anonymous_true_off_loopback_warns(tmp_path):
    ack, err = off_loopback(tmp_path, 4, "--set", "allow_anonymous=true")
    assert ack.reason == 0
    assert re.search(r"warn WARNING: allow_anonymous is true and a listener is bound to 0\.0\.0\.0", err), err


@pytest.mark.parametrize("kind,text,want", [
    ("password_file", "alice:plaintext\n", r"passwd: line 1: user alice: not a password hash"),
    ("password_file", "# ok\nalice:$7$900000000$MDEy$AAAA\n", r"passwd: line 2: user alice: iteration count"),
    ("acl_file", "user a\ntopic rw x\n", r"acl: line 2: access \"rw\""),
    ("acl_file", "topic read a/#/b\n", r"acl: line 1: .*not a valid topic filter"),
])
def test_bad_files_stop_the_start(tmp_path, kind, text, want):
    path = tmp_path / ("passwd" if kind == "password_file" else "acl")
    path.write_text(text)
    p = run_starlingd(tmp_path, "--bind", "127.0.0.1", "-p", str(free_port()), "--set", "%s=%s" % (kind, path))
    _, err = p.communicate(timeout=20)
    assert p.returncode != 0
    lines = [l for l in err.splitlines() if l.startswith("starlingd:")]
    assert len(lines) == 1 and re.search(want, lines[0]) and str(path) in lines[0], err


def test_missing_file_stops_the_start(tmp_path):
    p = run_starlingd(tmp_path, "-p", str(free_port()), "--bind", "127.0.0.1", "--set",
                      "acl_file=%s" % (tmp_path / "none"))
    _, err = p.communicate(timeout=20)
    assert p.returncode != 0 and "No such file" in err, err


# --- authorization ----------------------------------------------------------------------


def test_publish_denied_v5_reason_codes(secured):
    sub = login(secured, "admin")
    sub.subscribe(1, [("#", 1)])
    alice = login(secured, "alice")
    assert alice.publish("bob/x", b"no", qos=1, pid=1).reason == 0x87
    assert alice.publish("bob/x", b"no", qos=2, pid=2).reason == 0x87
    alice.publish("bob/x", b"no", qos=0)
    assert alice.publish("alice/ok", b"yes", qos=1, pid=3).reason in (0x00, 0x10)
    got = sub.publishes_until("alice/ok")
    assert got == [], got
    # the connection goes on after refusals
    assert alice.publish("alice/ok", b"again", qos=2, pid=4).type == rawmqtt.PUBCOMP


@pytest.mark.parametrize("version", [3, 4])
def test_publish_denied_v3_dropped(secured, version):
    sub = login(secured, "admin", version=5)
    sub.subscribe(1, [("#", 1)])
    alice = login(secured, "alice", version=version, client_id=uid("a")[:20])
    ack = alice.publish("bob/x", b"no", qos=1, pid=1)
    assert ack.type == rawmqtt.PUBACK  # acknowledged, not delivered
    alice.publish("bob/x", b"no", qos=0)
    alice.publish("alice/m", b"marker", qos=1, pid=2)
    assert sub.publishes_until("alice/m") == []


def test_acl_deny_disconnect(start_broker, files):
    pw, acl = files
    b = start_broker(probe=("admin", USERS["admin"]), password_file=str(pw), acl_file=str(acl),
                     acl_deny_disconnect=True)
    alice = login(b, "alice")
    alice.send(rawmqtt.publish("bob/x", b"no", qos=1, pid=1, version=5))
    d = alice.expect(rawmqtt.DISCONNECT)
    assert d.reason == 0x87
    alice4 = login(b, "alice", version=4)
    alice4.send(rawmqtt.publish("bob/x", b"no", qos=0, version=4))
    alice4.recv_until_closed()


def test_subscribe_denied_per_filter(secured):
    alice = login(secured, "alice")
    ack = alice.subscribe(1, [("alice/#", 1), ("bob/#", 1), ("#", 0), ("$share/g/alice/x", 1),
                              ("$share/g/bob/x", 1), ("clients/%s/+" % "nope", 0)])
    assert ack.codes == [1, 0x87, 0x87, 1, 0x87, 0x87], ack
    alice4 = login(secured, "alice", version=4)
    ack = alice4.subscribe(1, [("alice/+", 1), ("bob/#", 1)])
    assert ack.codes == [1, 0x80], ack


def test_hash_subscriber_sees_only_what_it_may_read(secured):
    bob = login(secured, "bob")
    assert bob.subscribe(1, [("#", 1)]).codes == [1]
    admin = login(secured, "admin")
    for t in ["alice/x", "secret/a", "secret/b/c", "public/p", "marker/1"]:
        admin.publish(t, b"m", qos=1, pid=1)
    got = [p.topic for p in bob.publishes_until("marker/1")]
    assert got == ["alice/x", "public/p"], got


def test_retained_checked_on_subscribe(secured):
    admin = login(secured, "admin")
    admin.publish("secret/r", b"s", qos=1, pid=1, retain=True)
    admin.publish("public/r", b"p", qos=1, pid=2, retain=True)
    bob = login(secured, "bob")
    bob.subscribe(1, [("#", 1)])
    admin.publish("marker/r", b"m", qos=1, pid=3)
    got = [(p.topic, p.retain) for p in bob.publishes_until("marker/r")]
    assert ("public/r", True) in got and not [t for t, _ in got if t.startswith("secret")], got


def test_wills_checked_on_delivery_and_connect(secured):
    bob = login(secured, "bob")
    bob.subscribe(1, [("#", 1)])
    w1 = login(secured, "admin", will={"topic": "secret/will", "payload": b"w", "qos": 1})
    w2 = login(secured, "admin", will={"topic": "public/will", "payload": b"w", "qos": 1})
    w1.close()
    w2.close()
    admin = login(secured, "admin")
    # both wills are published once their connections are seen gone; the
    # marker follows the second will's arrival
    got = []
    deadline = time.monotonic() + 10
    while "public/will" not in got and time.monotonic() < deadline:
        p = bob.recv(timeout=10)
        if p.type == rawmqtt.PUBLISH:
            bob.send(rawmqtt.ack_packet(rawmqtt.PUBACK, p.pid, 5)) if p.qos == 1 else None
            got.append(p.topic)
    admin.publish("marker/w", b"m", qos=1, pid=1)
    got += [p.topic for p in bob.publishes_until("marker/w")]
    assert "public/will" in got and "secret/will" not in got, got
    # a will on a topic the user may not write: refused at CONNECT
    with rawmqtt.RawClient(secured.port, version=5) as c:
        c.connect(uid(), username="alice", password=USERS["alice"], will={"topic": "bob/x", "payload": b"w"},
                  expect_reason=0x87)
    with rawmqtt.RawClient(secured.port, version=4) as c:
        c.connect(uid()[:20], username="alice", password=USERS["alice"], will={"topic": "bob/x", "payload": b"w"},
                  expect_reason=0x05)


def test_patterns_client_id_and_username(secured):
    carol = login(secured, "carol", client_id="dev1")
    assert carol.publish("clients/dev1/t", b"x", qos=1, pid=1).reason in (0, 0x10)
    assert carol.publish("clients/dev2/t", b"x", qos=1, pid=2).reason == 0x87
    assert carol.subscribe(1, [("inbox/carol/#", 1), ("inbox/bob/#", 1), ("carol/marker", 1)]).codes == [1, 0x87, 1]
    admin = login(secured, "admin")
    admin.publish("inbox/carol/m", b"hello", qos=1, pid=1)
    admin.publish("inbox/bob/m", b"no", qos=1, pid=2)
    admin.publish("carol/marker", b"m", qos=1, pid=3)
    got = [p.topic for p in carol.publishes_until("carol/marker")]
    assert got == ["inbox/carol/m"], got
    # a client id with '/' is denied everything while patterns use %c
    evil = login(secured, "carol", client_id="dev1/x")
    assert evil.publish("clients/dev1/x/t", b"x", qos=1, pid=1).reason == 0x87
    assert evil.publish("carol/ok", b"x", qos=1, pid=2).reason == 0x87


def test_anonymous_section(start_broker, files):
    pw, acl = files
    b = start_broker(password_file=str(pw), acl_file=str(acl), allow_anonymous=True)
    anon = rawmqtt.RawClient(b.port, version=5)
    anon.connect(uid())
    assert anon.subscribe(1, [("public/#", 1), ("alice/#", 1)]).codes == [1, 0x87]
    assert anon.publish("public/x", b"no", qos=1, pid=1).reason == 0x87
    alice = login(b, "alice")
    alice.publish("public/news", b"n", qos=1, pid=1)
    alice.publish("public/end", b"n", qos=1, pid=2)
    assert [p.topic for p in anon.publishes_until("public/end")] == ["public/news"]
    anon.close()


# --- sessions -------------------------------------------------------------------------------


@pytest.mark.parametrize("version,refusal", [(5, 0x87), (4, 0x05)])
def test_session_of_another_user_refused(secured, version, refusal):
    cid = uid("own")[:20]
    alice = rawmqtt.RawClient(secured.port, version=version)
    kw = {"props": {"SessionExpiryInterval": 300}} if version == 5 else {}
    alice.connect(cid, username="alice", password=USERS["alice"], clean=False, **kw)
    alice.subscribe(1, [("alice/q", 1)])
    with rawmqtt.RawClient(secured.port, version=version) as bob:
        bob.connect(cid, username="bob", password=USERS["bob"], clean=False, expect_reason=refusal)
    with rawmqtt.RawClient(secured.port, version=version) as anon:
        anon.connect(cid, clean=True, expect_reason=refusal)
    # alice's connection was not disturbed, her session not reset
    admin = login(secured, "admin")
    admin.publish("alice/q", b"still", qos=1, pid=1)
    p = alice.expect(rawmqtt.PUBLISH)
    assert p.payload == b"still"
    alice.disconnect()
    # offline: still hers
    with rawmqtt.RawClient(secured.port, version=version) as bob:
        bob.connect(cid, username="bob", password=USERS["bob"], expect_reason=refusal)
    again = rawmqtt.RawClient(secured.port, version=version)
    ack = again.connect(cid, username="alice", password=USERS["alice"], clean=False, **kw)
    assert ack.session_present
    again.close()


# --- SIGHUP --------------------------------------------------------------------------------------


def test_sighup_reloads_both_files(start_broker, tmp_path):
    pw = passwd_file(tmp_path / "pw", {"alice": "a1", "admin": "ad"})
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite a/#\nuser admin\ntopic readwrite #\n")
    b = start_broker(probe=("admin", "ad"), password_file=str(pw), acl_file=str(acl))
    alice = rawmqtt.RawClient(b.port, version=5)
    alice.connect(uid(), username="alice", password="a1")
    assert alice.publish("b/x", b"", qos=1, pid=1).reason == 0x87
    willing = rawmqtt.RawClient(b.port, version=5)
    willing.connect("willing", username="alice", password="a1", will={"topic": "a/will", "payload": b"w"})
    passwd_file(tmp_path / "pw2", {"dave": "d1", "admin": "ad"})
    os.replace(tmp_path / "pw2", pw)
    acl.write_text("user alice\ntopic readwrite b/#\nuser dave\ntopic readwrite d/#\nuser admin\ntopic readwrite #\n")
    b.proc.send_signal(signal.SIGHUP)
    wait_log(b, r"SIGHUP: reloaded password_file")
    with rawmqtt.RawClient(b.port, version=5) as d:
        d.connect(uid(), username="dave", password="d1")
        assert d.publish("d/x", b"", qos=1, pid=1).reason in (0, 0x10)
    with rawmqtt.RawClient(b.port, version=5) as a:
        a.connect(uid(), username="alice", password="a1", expect_reason=0x86)
    # connected clients stay connected, under the new rules
    assert alice.publish("b/x", b"", qos=1, pid=2).reason in (0, 0x10)
    assert alice.publish("a/x", b"", qos=1, pid=3).reason == 0x87
    # a will allowed at CONNECT, no longer by the reloaded rules
    watcher = rawmqtt.RawClient(b.port, version=5)
    watcher.connect(uid(), username="admin", password="ad")
    watcher.subscribe(1, [("#", 1)])
    willing.close()
    wait_log(b, r"will of willing on a/will not published: the ACL does not allow it")
    alice.publish("b/marker", b"m", qos=1, pid=9)
    assert [p.topic for p in watcher.publishes_until("b/marker")] == []
    watcher.close()
    # a reload that fails keeps the tables in force
    pw.write_text("dave:plain\n")
    b.proc.send_signal(signal.SIGHUP)
    wait_log(b, r"SIGHUP: .*line 1: user dave: not a password hash.*previous users and ACL stay in force")
    with rawmqtt.RawClient(b.port, version=5) as d:
        d.connect(uid(), username="dave", password="d1")
    alice.close()


# --- failure delay ----------------------------------------------------------------------------------


def test_repeated_failures_are_slowed_down(secured):
    times = []
    for i in range(7):
        with rawmqtt.RawClient(secured.port, version=5, timeout=10) as c:
            t0 = time.monotonic()
            c.connect(uid(), username="alice", password="wrong%d" % i, expect_reason=0x86, timeout=10)
            times.append(time.monotonic() - t0)
    # the first five at once, the next ones about AUTH_THROTTLE_DELAY_MS later
    assert max(times[:5]) < 0.8, times
    assert min(times[5:]) >= 0.5, times
    wait_log(secured, r"authentication failed: wrong password \(user \"alice\"\): refusal delayed")
    # a client that closes while its refusal waits does not upset anything
    c = rawmqtt.RawClient(secured.port, version=5)
    c.send(rawmqtt.connect(uid(), version=5, username="alice", password="x"))
    c.close()
    with rawmqtt.RawClient(secured.port, version=5) as ok:
        ok.connect(uid(), username="alice", password=USERS["alice"])
