"""Peer links over TLS (cluster_certfile, cluster_keyfile, cluster_cafile).

What flows between nodes is encrypted: a recording TCP proxy sits in front of
every node's cluster port (each node's peer line names its proxy; the node
itself listens behind it), a publish and a retained message carrying a
distinctive marker cross the nodes, and the marker never shows on the wire
with TLS (it does without: the same test with plaintext links proves the
recording sees the traffic). A node whose certificate comes from another CA,
and a peer that does not speak TLS (raw bytes, the old plaintext handshake, a
plaintext starlingd), are refused with "cluster: peer rejected" and leave the
cluster as it was. Missing or mismatched certificate files fail the start with
one line naming the file. Plaintext links log one warning at start."""

import signal
import socket
import subprocess
import threading

import pytest

import rawmqtt as r
from clients import uid

import harness
from cluster_mqtt import PUBACK_OK, assert_kept_out, check_serving, persistent, retain
from harness import (FAIL_FAST_TIMEOUT, PEER_REJECTED, PLAINTEXT_WARNING, STARLINGD, closed_by_peer, free_port,
                     make_certs, tls_keys, wait_for)

REJECT_TIMEOUT = 20.0
VERIFY_FAILED = "certificate verify failed"

needs_tls = pytest.mark.skipif(not harness.PEER_TLS, reason="peer links run plaintext (STARLING_TEST_PEER_TLS=0)")


class RecordingProxy:
    """Accepts on (host, port) and forwards every connection to target,
    recording what passes in both directions."""

    def __init__(self, host, port, target):
        self.target = target
        self.data = bytearray()
        self.connections = 0
        self.lock = threading.Lock()
        self.socks = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target, timeout=5)
                b.settimeout(None)
            except OSError:
                a.close()
                continue
            with self.lock:
                self.connections += 1
                self.socks += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        while True:
            try:
                d = src.recv(65536)
            except OSError:
                d = b""
            if not d:
                break
            with self.lock:
                self.data += d
            try:
                dst.sendall(d)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def recorded(self):
        with self.lock:
            return bytes(self.data)

    def close(self):
        self.listener.close()
        with self.lock:
            for s in self.socks:
                s.close()


def proxied_cluster(start_cluster, tls):
    """Two nodes, each listening behind a RecordingProxy on the address its
    peer line gives (so every peer connection, Raft, forwarding and data
    links, crosses a proxy). Returns (cluster, [proxies])."""
    real = {i: free_port("127.0.0.%d" % i) for i in (1, 2)}
    c = start_cluster(n=2, node_settings={i: {"cluster_bind": "127.0.0.%d:%d" % (i, p)} for i, p in real.items()},
                      wait=False, tls=tls)
    proxies = [RecordingProxy(n.host, n.cluster_port, (n.host, real[n.id])) for n in c.nodes]
    return c, proxies


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plaintext"])
def test_traffic_between_nodes_is_encrypted(start_cluster, clients, tls):
    if tls and not harness.PEER_TLS:
        pytest.skip("peer links run plaintext (STARLING_TEST_PEER_TLS=0)")
    c, proxies = proxied_cluster(start_cluster, None if tls else False)
    try:
        n1, n2 = c.nodes
        c.wait_leader()
        marker = ("WIRE-MARKER-%s-" % uid("m")).encode()
        topic = "enc/%s" % marker.decode()
        sub, _ = persistent(clients, n2)
        assert sub.subscribe(topic + "/#", qos=1) == [1]
        c.wait_caught_up()
        # a live publish (data link), a retained one (Raft or forwarding)
        pub = clients.connected(n1)
        pub.publish(topic + "/live", marker * 64, qos=1)
        assert retain(n1, topic + "/kept", marker * 32) in PUBACK_OK
        m = sub.expect_message(timeout=30, topic=topic + "/live")
        assert m.payload == marker * 64, "the subscriber on node 2 got %r" % (m.payload[:80],)
        c.wait_caught_up()
        wire = b"".join(p.recorded() for p in proxies)
        assert all(p.connections for p in proxies), "a proxy saw no peer connection"
        assert len(wire) > 4096, "only %d bytes crossed the proxies" % len(wire)
        if tls:
            assert marker not in wire, "the marker crossed the wire in plaintext"
            assert PLAINTEXT_WARNING not in n1.run_log() + n2.run_log()
        else:
            assert marker in wire, "plaintext links, yet the recording never saw the marker"
            for n in c.nodes:
                assert n.run_log().count(PLAINTEXT_WARNING) == 1, "%r did not warn once: %s" % (
                    n, n.run_log()[-2000:])
    finally:
        for p in proxies:
            p.close()


BURST = 300                     # messages of BURST_SIZE published while node 2 is stopped
BURST_SIZE = 100 * 1024
PAUSED = "the peer is behind"
RESUMED = "the peer caught up, sending again"


@needs_tls
def test_a_stalled_peer_pauses_the_pump_and_nothing_is_lost(start_cluster, clients):
    """node 2 stops (SIGSTOP) while 30 MB cross to it: node 1's pump stops
    reading its side once more than 1 MiB waits for TCP (debug line), reads
    again when node 2 continues, and every message arrives, in order."""
    c = start_cluster(n=2, settings={"election_timeout_ms": 3000},
                      node_settings={1: {"log_level": "debug"},
                                     2: {"max_write_backlog": "256m", "slow_consumer_timeout_ms": 600000}})
    n1, n2 = c.nodes
    sub = clients.connected(n2)
    assert sub.subscribe("bp/#", qos=0) == [0]
    c.wait_caught_up()
    pub = r.RawClient(n1.port, version=4, host=n1.host, timeout=10)
    try:
        pub.connect(uid("bp"))
        pub.send(r.publish("bp/warm", b"w"))
        assert sub.expect_message(timeout=10, topic="bp/warm").payload == b"w"
        n2.pause()
        try:
            for i in range(BURST):
                pub.send(r.publish("bp/x", i.to_bytes(4, "big") + bytes([i & 0xff]) * BURST_SIZE))
            n1.wait_log(PAUSED, 20, "30 MB for a stopped node 2")
        finally:
            n2.resume()
        n1.wait_log(RESUMED, 30, "node 2 continued")
        got = [m.payload for m in sub.expect_messages(BURST, timeout=60)]
    finally:
        pub.close()
    order = [int.from_bytes(p[:4], "big") for p in got]
    assert order == list(range(BURST)), "messages lost or out of order: %s..." % order[:20]
    assert all(p[4:] == bytes([i & 0xff]) * BURST_SIZE for i, p in enumerate(got)), "a payload was damaged"


def leader_history(cluster):
    return {n.id: n.leader_reports() for n in cluster}


@needs_tls
def test_member_with_a_certificate_of_another_ca_is_refused(start_cluster, clients, tmp_path):
    other = make_certs(tmp_path / "other-ca", nodes=3)
    c = start_cluster(node_settings={3: {k: v for k, v in tls_keys(other, 3).items()}}, wait=False)
    n1, n2, n3 = c.nodes
    n3.may_exit = True
    c.wait_leader(nodes=[n1, n2])
    # nodes 1 and 2 dial node 3 and check its certificate: refused, and said so
    for n in (n1, n2):
        n.wait_log(PEER_REJECTED, REJECT_TIMEOUT, "node 3's certificate is from another CA")
        line = next(l for l in n.run_log().splitlines() if PEER_REJECTED in l and VERIFY_FAILED in l)
        assert "%s:" % n3.cluster_addr in line or n3.host in line, "the line does not name node 3: %s" % line
    assert_kept_out(clients, c, [n1, n2], n3, tag="tls-ca")


def make_crl(certs, revoked, path):
    """A CRL of the CA in certs revoking the certificates named in revoked."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
         .last_update(now - datetime.timedelta(days=1)).next_update(now + datetime.timedelta(days=30)))
    for name in revoked:
        serial = x509.load_pem_x509_certificate((certs / name).read_bytes()).serial_number
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                      .revocation_date(now - datetime.timedelta(hours=1)).build())
    path.write_bytes(b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


@needs_tls
def test_a_member_with_a_revoked_certificate_is_refused(start_cluster, clients, tmp_path):
    crl = make_crl(harness.CERTS, ["node3.crt"], tmp_path / "ca.crl")
    c = start_cluster(settings={"cluster_crlfile": crl}, wait=False)
    n1, n2, n3 = c.nodes
    n3.may_exit = True
    c.wait_leader(nodes=[n1, n2])
    for n in (n1, n2):
        n.wait_log("certificate verify failed: certificate revoked", REJECT_TIMEOUT, "node 3 is revoked")
    assert_kept_out(clients, c, [n1, n2], n3, tag="tls-crl")


@needs_tls
def test_fourth_node_with_a_certificate_of_another_ca_never_joins(cluster, clients, add_node, tmp_path):
    other = make_certs(tmp_path / "other-ca", nodes=4)
    cluster.wait_leader()
    before = cluster.wait_caught_up()
    history = leader_history(cluster)
    intruder = add_node(cluster, 4, tls=other)
    intruder.may_exit = True
    intruder.start()
    wait_for(lambda: any(PEER_REJECTED in n.run_log() for n in cluster), REJECT_TIMEOUT,
             "no node logged %r for the intruder" % PEER_REJECTED)
    intruder.wait_log(VERIFY_FAILED, REJECT_TIMEOUT, "the cluster's certificates are not from its CA")
    after = cluster.wait_caught_up()
    assert after[0].state == before[0].state, before[0].diff(after[0])
    n1, n2, n3 = cluster.nodes
    check_serving(clients, n1, n2, n3, tag="tls-4")
    assert leader_history(cluster) == history, "the intruder disturbed the cluster's leadership"
    assert not intruder.leader_reports(), "the intruder learned a leader: %s" % intruder.leader_reports()


def old_hello_d():
    """The plaintext handshake's answer (HELLO_D) of a dialer, with a MAC of zeros."""
    addr = b"127.0.0.9:9"
    return (b"STRL\x01\x01" + len(addr).to_bytes(2, "little") + (9).to_bytes(8, "little") + bytes(16) + bytes(32)
            + addr)


@needs_tls
def test_peers_without_tls_are_refused(cluster, clients):
    cluster.wait_leader()
    before = cluster.wait_caught_up()
    history = leader_history(cluster)
    n1 = cluster.nodes[0]
    # the TLS acceptor waits for a ClientHello: no plaintext challenge comes
    with socket.create_connection((n1.host, n1.cluster_port)) as s:
        s.settimeout(1.0)
        with pytest.raises(socket.timeout):
            s.recv(64)
        s.sendall(old_hello_d())
        assert closed_by_peer(s, 10), "the node kept a plaintext handshake open"
    n1.wait_log(PEER_REJECTED, REJECT_TIMEOUT, "after the plaintext handshake")
    for payload in (b"\x00" * 512, b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection((n1.host, n1.cluster_port)) as s:
            s.sendall(payload)
            assert closed_by_peer(s, 10), "the node kept %r open" % payload[:16]
    after = cluster.wait_caught_up()
    assert after[0].state == before[0].state, before[0].diff(after[0])
    assert leader_history(cluster) == history
    check_serving(clients, *cluster.nodes, tag="tls-raw")


@needs_tls
def test_plaintext_member_in_a_tls_cluster_is_refused(start_cluster, clients):
    plain = {"cluster_certfile": '""', "cluster_keyfile": '""', "cluster_cafile": '""'}
    c = start_cluster(node_settings={3: plain}, wait=False)
    n1, n2, n3 = c.nodes
    n3.may_exit = True
    c.wait_leader(nodes=[n1, n2])
    for n in (n1, n2):
        n.wait_log(PEER_REJECTED, REJECT_TIMEOUT, "node 3 does not speak TLS")
    n3.wait_log(PLAINTEXT_WARNING, 5, "node 3 runs plaintext links")
    assert_kept_out(clients, c, [n1, n2], n3, tag="tls-plain")


@pytest.mark.parametrize("tls", [False], ids=["plaintext"])
def test_plaintext_cluster_serves_and_warns(start_cluster, clients, tls):
    c = start_cluster(n=3, tls=tls)
    for n in c.nodes:
        assert n.run_log().count(PLAINTEXT_WARNING) == 1, "%r: %s" % (n, n.run_log()[-2000:])
    check_serving(clients, *c.nodes, tag="plain")
    c.wait_caught_up()


def test_single_node_on_loopback_does_not_warn(start_node):
    n = start_node(tls=False, cluster_secret="s")   # listens (can be joined), on 127.0.0.1 only
    assert PLAINTEXT_WARNING not in n.run_log()


def refused(tmp_path, keys, expect):
    """starlingd with the peer-link keys keys exits at start, printing one line with expect."""
    argv = [STARLINGD, "-p", str(free_port("127.0.0.1")), "--bind", "127.0.0.1", "--data-dir",
            str(tmp_path / "data"), "--set", "cluster_bind=127.0.0.1:%d" % free_port("127.0.0.1"),
            "--set", "admin_listen=off"]
    for k, v in keys.items():
        argv += ["--set", "%s=%s" % (k, v)]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=FAIL_FAST_TIMEOUT)
    err = p.stderr.decode(errors="replace")
    assert p.returncode != 0, "starlingd started with %s\n%s" % (keys, err)
    lines = [l for l in err.splitlines() if expect in l]
    assert len(lines) == 1, "no single line with %r:\n%s" % (expect, err)
    return lines[0]


def test_bad_certificate_files_fail_the_start(tmp_path):
    certs = make_certs(tmp_path / "certs", nodes=2)
    good = tls_keys(certs, 1)
    missing = str(tmp_path / "missing.crt")
    line = refused(tmp_path, dict(good, cluster_certfile=missing), missing)
    assert "cluster_certfile" in line and "No such file" in line, line
    line = refused(tmp_path, dict(good, cluster_cafile=missing), missing)
    assert "cluster_cafile" in line, line
    other_key = str(certs / "node2.key")
    line = refused(tmp_path, dict(good, cluster_keyfile=other_key), other_key)
    assert "cluster_keyfile" in line and "mismatch" in line, line
    line = refused(tmp_path, dict(good, cluster_keyfile=str(certs / "ca.crt")), str(certs / "ca.crt"))
    assert "cluster_keyfile" in line, line
    line = refused(tmp_path, dict(good, cluster_crlfile=missing), missing)
    assert "cluster_crlfile" in line, line
    line = refused(tmp_path, {"cluster_certfile": good["cluster_certfile"]}, "cluster_keyfile")
    assert "cluster_certfile, cluster_keyfile and cluster_cafile" in line, line


PEER_RELOADED = "SIGHUP: TLS certificates of the peer links reloaded"


def sighup(node, count):
    """SIGHUP to node; waits for its count-th reload line of the peer links."""
    node.signal(signal.SIGHUP)
    wait_for(lambda: node.run_log().count(PEER_RELOADED) >= count, REJECT_TIMEOUT,
             lambda: "%r did not reload its peer certificates:\n%s" % (node, node.run_log()[-3000:]))


def links_between(a, b):
    """The established TCP connections between nodes a and b on a cluster
    port of either (ss), as (local, peer) address pairs."""
    out = subprocess.run(["ss", "-Htn", "state", "established"], stdout=subprocess.PIPE, check=True,
                         timeout=10).stdout.decode()
    ends = {a.cluster_addr, b.cluster_addr}
    found = set()
    for line in out.splitlines():
        cols = line.split()
        local, peer = cols[-2], cols[-1]
        hosts = {local.rsplit(":", 1)[0], peer.rsplit(":", 1)[0]}
        if hosts == {a.host, b.host} and (local in ends or peer in ends):
            found.add((local, peer))
    return found


@needs_tls
def test_sighup_reloads_the_peer_certificates_without_dropping_links(start_cluster, clients, tmp_path):
    """The node certificates, the CA and the CRL are re-issued in place
    (deploy/make-certs.sh: a new CA) while a follower is down; the two others
    get SIGHUP. Every TCP connection between them stays up, and the follower
    restarted with its new certificate is accepted (its dials and theirs
    verify against the new CA only, so neither would pass without the
    reload). Once the CRL revokes the follower and they get SIGHUP again, its
    restart is refused."""
    certs = make_certs(tmp_path / "certs", nodes=3)
    crl = make_crl(certs, [], tmp_path / "ca.crl")
    c = start_cluster(tls=certs, settings={"cluster_crlfile": crl})
    leader, _ = c.wait_leader()
    out = [n for n in c.nodes if n is not leader][-1]   # restarted: a follower, so the leader stays
    keep = [n for n in c.nodes if n is not out]
    # every link between the two kept nodes (Raft both ways, data, forwarding) is up
    check_serving(clients, keep[0], keep[1], out, tag="reload-a")
    check_serving(clients, keep[1], keep[0], keep[0], tag="reload-b")
    c.wait_caught_up()
    before = links_between(*keep)
    assert before, "no connection between %r and %r" % tuple(keep)

    out.kill()
    make_certs(certs, nodes=3)               # a new CA, new node certificates, same files
    make_crl(certs, [], crl)
    for n in keep:
        sighup(n, 1)
    out.start()
    c.wait_leader()
    check_serving(clients, out, keep[0], out, tag="reload-c")
    c.wait_caught_up()
    for n in c.nodes:
        assert PEER_REJECTED not in n.run_log(), "%r refused a peer: %s" % (n, n.run_log()[-2000:])
    dropped = before - links_between(*keep)
    assert not dropped, "connections between %r and %r were dropped: %s" % (keep[0], keep[1], dropped)

    out.kill()
    make_crl(certs, ["node%d.crt" % out.id], crl)
    for n in keep:
        sighup(n, 2)
    out.may_exit = True
    out.start()
    for n in keep:
        n.wait_log("certificate verify failed: certificate revoked", REJECT_TIMEOUT, "%r is revoked" % out)
    check_serving(clients, keep[0], keep[1], keep[1], tag="reload-d")
    assert not out.leader_reports(), "revoked %r learned a leader: %s" % (out, out.leader_reports())


@needs_tls
def test_sighup_with_a_broken_peer_certificate_keeps_the_old_one(start_cluster, clients, tmp_path):
    certs = make_certs(tmp_path / "certs", nodes=3)
    c = start_cluster(tls=certs)
    n1, n2, n3 = c.nodes
    (certs / "node1.key").write_text("not a key\n")
    n1.signal(signal.SIGHUP)
    n1.wait_log("the peer links keep the certificates loaded before", REJECT_TIMEOUT, "a broken keyfile")
    line = next(l for l in n1.run_log().splitlines() if "the peer links keep" in l)
    assert "cluster_keyfile" in line and str(certs / "node1.key") in line, line
    assert PEER_RELOADED not in n1.run_log()
    n2.kill()
    n2.start()                               # dials node 1, which still has a usable certificate
    c.wait_leader()
    check_serving(clients, n2, n1, n2, tag="reload-bad")
