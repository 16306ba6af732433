"""Users and ACL rules in the replicated state (docs/auth.md, "Users and
rules in the cluster"): a change made through any node's admin API (or
starlingctl) holds on every node once the call returned, with real clients
(mosquitto_pub, raw v5 and v3.1.1) checking the CONNACK and SUBACK codes; a
mosquitto_passwd file and an acl_file imported; the state survives a restart
(loaded from the store) and reaches a node through a snapshot. The dump
shows users without any hash."""

import subprocess

import pytest

import harness
from clients import uid

pytestmark = pytest.mark.skipif(not harness.admin_supported(), reason="no admin API in this starlingd")
pytestmark = [pytestmark, pytest.mark.own_auth]  # users and rules of its own (authmode.py)


def pub(node, user, password, topic="t/x", version="mqttv5"):
    """mosquitto_pub one QoS 1 message; (exit code, stderr)."""
    args = ["mosquitto_pub", "-h", node.host, "-p", str(node.port), "-V", version, "-q", "1", "-t", topic,
            "-m", "hello", "-i", uid("pub")]
    if user is not None:
        args += ["-u", user, "-P", password]
    p = subprocess.run(args, capture_output=True, timeout=20)
    return p.returncode, p.stderr.decode(errors="replace")


def ok(result, cluster=None):
    """The output of a starlingctl call that must succeed. With cluster: then
    waits until every node applied it (the call returns once the change is
    committed and applied on the node asked; the others apply it as they
    learn of the commit, normally within a heartbeat)."""
    code, out, err = result
    assert code == 0, "starlingctl exited %d: %s%s" % (code, out, err)
    if cluster is not None:
        cluster.wait_caught_up()
    return out


def test_users_and_rules_hold_on_every_node(start_cluster, raw, tmp_path):
    cluster = start_cluster()
    n1, n2, n3 = cluster.nodes
    # anonymous clients are let in while the cluster has no user (loopback, allow_anonymous unset)
    assert pub(n3, None, None)[0] == 0

    out = ok(n2.ctl("users", "add", "alice", "--password", "a-pw"))
    assert "user alice added" in out
    ok(n1.ctl("users", "add", "bob", "--password", "b-pw"), cluster)
    # added on node 2, known on node 3
    assert pub(n3, "alice", "a-pw")[0] == 0
    code, err = pub(n3, "alice", "wrong")
    assert code != 0 and "bad user name or password" in err.lower(), err
    raw(n3, version=5).connect(uid("c"), username="alice", password="wrong", expect_reason=0x86)
    raw(n1, version=4).connect(uid("c"), username="alice", password="wrong", expect_reason=0x04)
    raw(n1, version=5).connect(uid("c"), username="nobody", password="x", expect_reason=0x86)
    # a replicated user counts as a user: the anonymous default now refuses
    raw(n2, version=5).connect(uid("anon"), expect_reason=0x87)
    raw(n2, version=4).connect(uid("anon"), expect_reason=0x05)

    # passwd on node 3, checked on node 1
    ok(n3.ctl("users", "passwd", "alice", "--password", "a-pw2"), cluster)
    raw(n1, version=5).connect(uid("c"), username="alice", password="a-pw", expect_reason=0x86)
    raw(n1, version=5).connect(uid("c"), username="alice", password="a-pw2")

    # an ACL rule added on node 1 denies a subscribe on node 2
    ok(n1.ctl("acl", "add", "--user", "alice", "read", "a/#"), cluster)
    c = raw(n2, version=5)
    c.connect(uid("sub"), username="alice", password="a-pw2")
    assert c.subscribe(1, [("a/x", 1), ("b/x", 1)]).codes == [1, 0x87]
    c4 = raw(n3, version=4)
    c4.connect(uid("sub"), username="alice", password="a-pw2")
    assert c4.subscribe(1, [("b/#", 0), ("a/+", 0)]).codes == [0x80, 0]
    # a deny added later wins over the grant
    ok(n3.ctl("acl", "add", "--user", "alice", "deny", "a/secret"), cluster)
    c = raw(n1, version=5)
    c.connect(uid("sub"), username="alice", password="a-pw2")
    assert c.subscribe(1, [("a/secret", 0), ("a/open", 0)]).codes == [0x87, 0]
    out = ok(n2.ctl("acl", "list"))
    assert "a/secret" in out and "deny" in out and "2 rules" in out, out

    # delete alice on node 1: refused on every node
    out = ok(n1.ctl("users", "del", "alice"), cluster)
    assert "user alice deleted" in out
    for n in cluster.nodes:
        raw(n, version=5).connect(uid("c"), username="alice", password="a-pw2", expect_reason=0x86)
        raw(n, version=4).connect(uid("c"), username="alice", password="a-pw2", expect_reason=0x04)
    code, out, err = n2.ctl("users", "del", "alice")
    assert code == 1 and "no such user" in err, (code, out, err)

    dumps = cluster.wait_caught_up()
    # the passwords never entered the log, the store or a log line: only hashes did
    for n in cluster.nodes:
        seen = False  # the control: the user names are there
        for f in n.data_dir.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                seen = seen or b"alice" in data
                for secret in (b"a-pw2", b"b-pw"):
                    assert secret not in data, "%s holds the password %r" % (f, secret)
        assert seen, "no file of %s holds the user name" % n.data_dir
        assert "a-pw2" not in n.log() and "b-pw" not in n.log()
    for d in dumps:
        assert set(d.users) == {b"bob"}, d.users
        assert d.users[b"bob"]["scram"] == "1"
        assert (b"user", b"alice", b"a/#") in d.acl
        assert "$7$" not in d.text and "b-pw" not in d.text


def test_imported_mosquitto_files(start_cluster, raw, tmp_path):
    cluster = start_cluster()
    n1, n2, n3 = cluster.nodes
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "carol", "c-pw"], check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "dave", "d pw:x"], check=True, capture_output=True)
    out = ok(n3.ctl("users", "import", pw), cluster)
    assert "2 new, 0 replaced" in out, out
    raw(n1, version=5).connect(uid("c"), username="carol", password="c-pw")
    raw(n2, version=4).connect(uid("c"), username="dave", password="d pw:x")
    raw(n2, version=5).connect(uid("c"), username="dave", password="d pw", expect_reason=0x86)
    # imported lines keep their hash and have no SCRAM credentials
    code, body = n1.api("/api/v1/users")
    assert code == 200
    assert {u["name"]: u["scram"] for u in body["users"]} == {"carol": False, "dave": False}
    # a second import replaces
    assert "0 new, 2 replaced" in ok(n2.ctl("users", "import", pw))

    acl = tmp_path / "acl"
    acl.write_text("topic read public/#\n\nuser carol\ntopic readwrite carol/#\npattern read inbox/%u/#\n")
    assert "3 new" in ok(n1.ctl("acl", "import", acl), cluster)
    c = raw(n3, version=5)
    c.connect(uid("s"), username="carol", password="c-pw")
    assert c.subscribe(1, [("carol/x", 0), ("inbox/carol/1", 0), ("inbox/dave/1", 0), ("public/a", 0)]).codes == \
        [0, 0, 0x87, 0x87]

    # a bad file is refused with the line that is wrong, and nothing changes
    bad = tmp_path / "bad"
    bad.write_text("erin:$7$101$c2FsdA==$aGFzaA==\nfrank:plaintext\n")
    code, out, err = n2.ctl("users", "import", bad)
    assert code == 1 and "line 1" in err, (code, out, err)
    bad.write_text("topic read ok/#\ntopic sometimes x\n")
    code, out, err = n2.ctl("acl", "import", bad)
    assert code == 1 and "line 2" in err, (code, out, err)
    status, body = harness.http_json(n3.admin_url + "/api/v1/acl")
    assert status == 200 and body["count"] == 3


def test_users_survive_a_restart_and_a_snapshot(start_cluster, raw):
    cluster = start_cluster(settings={"snapshot_threshold": 16, "snapshot_trailing": 2})
    n1, n2, n3 = cluster.nodes
    ok(n1.ctl("users", "add", "alice", "--password", "a-pw"))
    ok(n1.ctl("acl", "add", "--user", "alice", "readwrite", "a/#"), cluster)
    # a restart loads them from the store
    n2.terminate()
    n2.start()
    n2.wait_listening()
    raw(n2, version=5).connect(uid("c"), username="alice", password="a-pw")
    c = raw(n2, version=5)
    c.connect(uid("c"), username="alice", password="a-pw")
    assert c.subscribe(1, [("b/x", 0)]).codes == [0x87]

    # node 3 misses more than a snapshot's worth of entries: it gets a snapshot
    n3.terminate()
    ok(n1.ctl("users", "add", "bob", "--password", "b-pw"))
    for i in range(24):
        ok(n2.ctl("acl", "add", "--user", "bob", "read", "bob/%d" % i))
    ok(n1.ctl("users", "del", "alice"))
    n3.start()
    n3.wait_listening()
    n3.wait_log("reloading the replicated state from a snapshot", harness.CATCH_UP_TIMEOUT)
    cluster.wait_caught_up()
    raw(n3, version=5).connect(uid("c"), username="bob", password="b-pw")
    raw(n3, version=5).connect(uid("c"), username="alice", password="a-pw", expect_reason=0x86)
    c = raw(n3, version=5)
    c.connect(uid("c"), username="bob", password="b-pw")
    assert c.subscribe(1, [("bob/7", 0), ("bob/x", 0)]).codes == [0, 0x87]
