"""Authentication across a cluster: every node checks the same password file,
and a session belongs to the user that created it on every node: the owner
travels in the replicated session record (cluster/apply.c refuses another
user's claim the same way on each node)."""

import subprocess

import pytest

import rawmqtt as r
from clients import uid

pytestmark = pytest.mark.own_auth  # its own password file and users (authmode.py)

EXPIRY = {"SessionExpiryInterval": 300}


def passwd(path, users):
    for i, (user, pw) in enumerate(users.items()):
        subprocess.run(["mosquitto_passwd"] + (["-c"] if i == 0 else []) + ["-b", str(path), user, pw],
                       check=True, capture_output=True)
    return path


def test_session_of_user_a_cannot_be_taken_by_user_b_on_another_node(start_cluster, raw, tmp_path):
    pw = passwd(tmp_path / "passwd", {"alice": "a-pw", "bob": "b-pw"})
    cluster = start_cluster(settings={"password_file": str(pw)})
    n1, n2, n3 = cluster.nodes
    cid = uid("owned")
    alice = raw(n1, version=5)
    alice.connect(cid, username="alice", password="a-pw", clean=False, props=EXPIRY)
    assert alice.subscribe(1, [("own/q", 1)]).codes == [1]
    cluster.wait_caught_up()
    # bob, on the other nodes, in both protocol versions
    bob = raw(n2, version=5)
    bob.connect(cid, username="bob", password="b-pw", clean=True, expect_reason=0x87)
    bob4 = raw(n3, version=4)
    bob4.connect(cid, username="bob", password="b-pw", clean=False, expect_reason=0x05)
    anon = raw(n2, version=5)
    anon.connect(cid, expect_reason=0x87)  # anonymous: refused as such (password_file set)
    bad = raw(n3, version=5)
    bad.connect(cid, username="alice", password="wrong", expect_reason=0x86)
    # alice's connection on node 1 was left alone, her subscription too
    pub = raw(n3, version=5)
    pub.connect(uid("pub"), username="bob", password="b-pw")
    pub.publish("own/q", b"still hers", qos=1, pid=1)
    assert alice.expect(r.PUBLISH).payload == b"still hers"
    # alice herself moves the session to node 2
    moved = raw(n2, version=5)
    ack = moved.connect(cid, username="alice", password="a-pw", clean=False, props=EXPIRY)
    assert ack.session_present
    alice.recv_until_closed()
    # and from there it is still not bob's
    again = raw(n1, version=5)
    again.connect(cid, username="bob", password="b-pw", expect_reason=0x87)


def scram_server_first(client, user):
    """Sends a SCRAM-SHA-256 client-first in CONNECT; returns the server-first's attributes."""
    client.send(r.connect(uid("scram"), version=5, props={"AuthenticationMethod": "SCRAM-SHA-256",
                                                            "AuthenticationData": ("n,,n=%s,r=abc" % user).encode()}))
    p = client.expect(r.AUTH)
    assert p.reason == 0x18, p
    return dict(kv.split("=", 1) for kv in p.props["AuthenticationData"].decode().split(","))


def test_scram_unknown_user_gets_the_same_salt_on_every_node(start_cluster, raw, tmp_path):
    # the fake salt comes from the cluster_secret: asking several nodes tells nothing
    pw = passwd(tmp_path / "passwd", {"alice": "a-pw"})
    cluster = start_cluster(settings={"password_file": str(pw)})
    salts = {i: scram_server_first(raw(n, version=5), "ghost")["s"] for i, n in enumerate(cluster.nodes)}
    assert len(set(salts.values())) == 1, salts
    assert scram_server_first(raw(cluster.nodes[0], version=5), "ghost2")["s"] not in salts.values()
