"""starling-bench over TLS (-S/--ssl, --ssl-version, --cacertfile, --certfile,
--keyfile, --ciphers) against a private Mosquitto with a TLS listener made from
deploy/make-certs.sh's certificates: connections, pub/sub at QoS 1 with
every message counted, verification of the broker only with --cacertfile, a
client certificate when the broker requires one, a pinned TLS version.

Run: /usr/bin/python3 -m pytest tests/integration/test_bench_tls.py
"""

import os

import pytest

import devcerts
from bench_helpers import Bench, Mosquitto, Starlingd, bench_binary, free_port, run  # noqa: F401 (fixture)
from devcerts import certs  # noqa: F401 (fixture)

H = ["-h", "127.0.0.1"]


def tls_mosquitto(tmp_path, certs, *extra):
    # queues deep enough that a loaded machine's slow subscriber loses nothing
    lines = ["allow_anonymous true", "max_queued_messages 100000", f"cafile {certs / 'ca.crt'}",
             f"certfile {certs / 'server.crt'}", f"keyfile {certs / 'server.key'}", *extra]
    if os.geteuid() == 0:
        lines.append("user root")  # else Mosquitto drops to 'mosquitto', who cannot read the 0600 key
    return Mosquitto(tmp_path, lines)


@pytest.fixture
def mosq(tmp_path, certs):
    m = tls_mosquitto(tmp_path, certs)
    yield m
    m.stop()


def hp(m):
    return H + ["-p", m.port]


def test_conn_over_tls_without_a_ca_does_not_verify(mosq):
    r = run("conn", "-S", *hp(mosq), "-c", 20, "-i", 0, "-d", 1, "--json")
    assert r.returncode == 0, r.stderr
    j = r.json()
    assert j["connect"]["connected"] == 20 and j["connect"]["failed"] == 0


def test_plain_tcp_to_a_tls_port_fails(mosq):
    r = run("conn", *hp(mosq), "-c", 2, "-i", 0, "--connect-timeout", 3, "-d", 5, "--json")
    assert r.returncode == 1
    assert r.json()["connect"]["connected"] == 0


def test_cacertfile_verifies_the_broker_and_its_name(mosq, certs, tmp_path):
    ok = run("conn", "--ssl", "--cacertfile", certs / "ca.crt", "-h", "localhost", "-p", mosq.port, "-c", 3,
             "-d", 1, "--json")
    assert ok.returncode == 0, ok.stderr
    assert ok.json()["connect"]["connected"] == 3
    other = devcerts.make(tmp_path / "other")
    bad = run("conn", "-S", "--cacertfile", other / "ca.crt", *hp(mosq), "-c", 3, "-d", 3, "--json")
    assert bad.returncode == 1
    j = bad.json()
    assert j["connect"]["connected"] == 0 and j["connect"]["failed"] == 3
    assert any(e["error"] == "TLS" for e in j["errors"]), j["errors"]
    assert "starling-bench: TLS: certificate verify failed" in bad.stderr
    assert "TLS handshake failed" in bad.stderr


def test_cacertfile_checks_the_host_name(tmp_path, certs):
    """A second TLS listener on 127.0.0.3, an address the server certificate
    does not name: refused with --cacertfile, accepted without (no check)."""
    port = free_port()
    m = tls_mosquitto(tmp_path, certs, f"listener {port} 127.0.0.3", f"certfile {certs / 'server.crt'}",
                      f"keyfile {certs / 'server.key'}")
    try:
        ok = run("conn", "-S", "-h", "127.0.0.3", "-p", port, "-c", 1, "-d", 1, "--json")
        assert ok.returncode == 0, ok.stderr
        wrong_name = run("conn", "-S", "--cacertfile", certs / "ca.crt", "-h", "127.0.0.3", "-p", port,
                         "-c", 1, "-d", 3, "--connect-timeout", 3, "--json")
        assert wrong_name.returncode == 1
        assert "certificate verify failed" in wrong_name.stderr
    finally:
        m.stop()


def test_pub_sub_qos1_over_tls_delivers_everything(mosq, certs):
    sub = Bench("sub", "-S", "--cacertfile", certs / "ca.crt", *hp(mosq), "-c", 2, "-t", "tls/#", "-q", 1,
                "-L", 4000, "-d", 60, "--json")
    sub.wait_ready()
    pub = run("pub", "-S", *hp(mosq), "-c", 4, "-i", 0, "-I", 0, "-q", 1, "-F", 10, "-t", "tls/%i",
              "--limit-per-client", 500, "--json")
    assert pub.returncode == 0, pub.stderr
    assert pub.json()["publish"]["acked"] == 2000
    sub.finish()
    s = sub.json()
    assert sub.returncode == 0, sub.stderr
    assert s["receive"]["count"] == 4000  # 2 subscribers x 2000
    assert s["latency_us"]["count"] == 4000


def test_client_certificate_when_the_broker_requires_one(tmp_path, certs):
    m = tls_mosquitto(tmp_path, certs, "require_certificate true")
    try:
        without = run("conn", "-S", *hp(m), "-c", 2, "-d", 3, "--connect-timeout", 3, "--json")
        assert without.returncode == 1
        assert without.json()["connect"]["connected"] == 0
        with_cert = run("conn", "-S", "--certfile", certs / "client.crt", "--keyfile", certs / "client.key",
                        *hp(m), "-c", 2, "-d", 1, "--json")
        assert with_cert.returncode == 0, with_cert.stderr
        assert with_cert.json()["connect"]["connected"] == 2
    finally:
        m.stop()


def test_ssl_version_pins_one_version(tmp_path, certs):
    m = tls_mosquitto(tmp_path, certs, "tls_version tlsv1.3")
    try:
        v12 = run("conn", "--ssl-version", "tlsv1.2", *hp(m), "-c", 1, "-d", 3, "--connect-timeout", 3, "--json")
        assert v12.returncode == 1, "a TLS 1.3-only broker must refuse a client pinned to 1.2"
        v13 = run("conn", "--ssl-version", "tlsv1.3", *hp(m), "-c", 1, "-d", 1, "--json")
        assert v13.returncode == 0, v13.stderr
        # emqtt-bench's comma list: a TLS 1.3 suite by its IANA name
        suite = run("conn", "-S", "--ciphers", "TLS_CHACHA20_POLY1305_SHA256", *hp(m), "-c", 1, "-d", 1, "--json")
        assert suite.returncode == 0, suite.stderr
    finally:
        m.stop()


def test_bad_tls_files_are_a_setup_error(certs, tmp_path):
    r = run("conn", "-S", "--cacertfile", tmp_path / "missing.crt", *H, "-p", 1, "-c", 1)
    assert r.returncode == 1
    assert "missing.crt" in r.stderr and "TLS" in r.stderr
    r = run("conn", "-S", "--certfile", certs / "client.crt", "--keyfile", certs / "server.key", *H, "-p", 1,
            "-c", 1)
    assert r.returncode == 1 and "keyfile" in r.stderr


def test_pub_sub_over_starlingd_tls(tmp_path, certs):
    """The same against starlingd's own TLS listener (skipped by a starlingd
    without TLS listeners, which says so at start)."""
    port = free_port()
    s = Starlingd(tmp_path, ["max_queued 100000", f"listener {port} 127.0.0.1 tls",
                             f"certfile {certs / 'server.crt'}", f"keyfile {certs / 'server.key'}"])
    if not s.wait(port):
        pytest.skip(f"starlingd has no TLS listener: {s.unsupported}")
    try:
        conn = ["-S", "--cacertfile", certs / "ca.crt", "-h", "localhost", "-p", port]
        c = run("conn", *conn, "-c", 50, "-i", 0, "-d", 1, "--json")
        assert c.returncode == 0, c.stderr
        assert c.json()["connect"]["connected"] == 50
        sub = Bench("sub", *conn, "-c", 1, "-t", "st/#", "-q", 1, "-L", 1000, "-d", 60, "--json")
        sub.wait_ready()
        pub = run("pub", *conn, "-c", 2, "-i", 0, "-I", 1, "-q", 1, "-F", 10, "-t", "st/%i",
                  "--limit-per-client", 500, "--json")
        assert pub.returncode == 0, pub.stderr
        sub.finish()
        assert sub.json()["receive"]["count"] == 1000
    finally:
        s.stop()
