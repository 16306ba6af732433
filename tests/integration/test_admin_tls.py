"""The admin API over HTTPS (admin_certfile / admin_keyfile, admin_cafile)
against a real one-node starlingd, with curl, Python's ssl module and
starlingctl: answers over TLS, plain HTTP refused, wrong CA refused on both
sides, client certificates when admin_cafile is set, the handshake under
admin_request_timeout, and bad files stopping the start with one line."""

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import devcerts
from conftest import free_port
from devcerts import certs  # noqa: F401 (fixture)
from test_admin import STARLINGCTL, STARLINGD

CURL = "/usr/bin/curl"


@pytest.fixture
def https_node(start_broker, certs):
    """starlingd whose admin API speaks HTTPS only; b.https is its URL."""
    def start(**settings):
        settings.setdefault("admin_certfile", str(certs / "server.crt"))
        settings.setdefault("admin_keyfile", str(certs / "server.key"))
        b = start_broker(**settings)
        if b.is_mosquitto:
            pytest.skip("Starling-specific: the admin API")
        host, port = b.admin_url[len("http://"):].rsplit(":", 1)
        b.admin_host, b.admin_port = host, int(port)
        b.https = "https://%s:%s" % (host, port)
        return b
    return start


def curl(*args, timeout=20):
    if not os.access(CURL, os.X_OK):
        pytest.skip("curl is not installed")
    return subprocess.run([CURL, "-sS", "--max-time", "10"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def ctl(*args, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARLINGCTL_")}
    return subprocess.run([STARLINGCTL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=timeout)


def closed_within(sock, seconds):
    """True when the peer closes (or resets) sock within seconds, whatever it
    sent before."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not sock.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def test_curl_gets_status_over_https(https_node, certs):
    b = https_node()
    r = curl("--cacert", str(certs / "ca.crt"), b.https + "/api/v1/status")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["node"] == 1 and doc["state"] == "leader"
    # the certificate's DNS name works as well as its IP address
    r = curl("--cacert", str(certs / "ca.crt"), "https://localhost:%d/metrics" % b.admin_port)
    assert r.returncode == 0, r.stderr
    assert "starling_info" in r.stdout


def test_python_ssl_verifies_and_keeps_alive(https_node, certs):
    """Several requests on one TLS connection (keep-alive through the engine)."""
    b = https_node()
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    import http.client
    conn = http.client.HTTPSConnection(b.admin_host, b.admin_port, context=ctx, timeout=10)
    try:
        for path in ("/api/v1/status", "/api/v1/sessions", "/metrics", "/api/v1/status"):
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (path, body)
        conn.request("GET", "/no/such/path")
        r = conn.getresponse()
        assert r.status == 404
        r.read()
    finally:
        conn.close()


def tls_exchange(b, certs, data, timeout=10):
    """Raw bytes to the HTTPS admin port in one TLS write; everything that
    comes back until the node closes."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with socket.create_connection((b.admin_host, b.admin_port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(data)
            out = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        return out
                    out += chunk
            except (ssl.SSLError, ConnectionResetError):
                return out


def test_pipelined_requests_and_limits_over_tls(https_node, certs):
    b = https_node()
    # two requests in one TLS record, the second closing: both answered in order
    out = tls_exchange(b, certs, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
                                 b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert out.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 404 " in out, out[:400]
    # a request above 64 KiB: 413, decrypted and refused like a plain one
    body = b"x" * (70 * 1024)
    out = tls_exchange(b, certs, b"POST /api/v1/cluster/leave HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                       % len(body) + body)
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
    # garbage after the handshake: 400
    out = tls_exchange(b, certs, b"\x00\x01 not http\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]


def test_plain_http_to_https_port_is_refused(https_node, certs):
    b = https_node()
    with socket.create_connection((b.admin_host, b.admin_port), timeout=5) as s:
        s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        s.settimeout(5)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1." not in got and b"leader" not in got, got
    assert "TLS handshake failed" in b.log()
    # the API still answers over HTTPS afterwards
    r = curl("--cacert", str(certs / "ca.crt"), b.https + "/api/v1/status")
    assert r.returncode == 0, r.stderr


def test_client_refuses_a_server_of_another_ca(https_node, certs, tmp_path):
    other = devcerts.make(tmp_path / "other")
    b = https_node()
    r = curl("--cacert", str(other / "ca.crt"), b.https + "/api/v1/status")
    assert r.returncode != 0 and "certificate" in r.stderr.lower()
    assert not r.stdout


def test_bearer_token_still_applies_over_https(https_node, certs):
    b = https_node(admin_token="s3cret")
    r = curl("--cacert", str(certs / "ca.crt"), "-o", "/dev/null", "-w", "%{http_code}", b.https + "/api/v1/status")
    assert r.stdout == "401"
    r = curl("--cacert", str(certs / "ca.crt"), "-H", "Authorization: Bearer s3cret", b.https + "/api/v1/status")
    assert r.returncode == 0 and json.loads(r.stdout)["node"] == 1


def test_handshake_is_bounded_by_the_request_timeout(https_node):
    b = https_node(admin_request_timeout=1, admin_idle_timeout=30)
    # silent after connecting, and a ClientHello cut short: both closed after
    # admin_request_timeout, not admin_idle_timeout
    with socket.create_connection((b.admin_host, b.admin_port), timeout=5) as s:
        assert closed_within(s, 5)
    with socket.create_connection((b.admin_host, b.admin_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        assert closed_within(s, 5)


def test_admin_cafile_requires_a_client_certificate(https_node, certs):
    b = https_node(admin_cafile=str(certs / "ca.crt"))
    r = curl("--cacert", str(certs / "ca.crt"), b.https + "/api/v1/status")
    assert r.returncode != 0 and not r.stdout
    r = curl("--cacert", str(certs / "ca.crt"), "--cert", str(certs / "client.crt"), "--key",
             str(certs / "client.key"), b.https + "/api/v1/status")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["node"] == 1
    r = ctl("--url", b.https, "--cacert", str(certs / "ca.crt"), "cluster", "status")
    assert r.returncode != 0
    r = ctl("--url", b.https, "--cacert", str(certs / "ca.crt"), "--cert", str(certs / "client.crt"),
            "--key", str(certs / "client.key"), "cluster", "status")
    assert r.returncode == 0, r.stderr
    assert "state:" in r.stdout and "leader" in r.stdout


def test_starlingctl_status_over_https(https_node, certs):
    b = https_node()
    r = ctl("--url", b.https, "--cacert", str(certs / "ca.crt"), "cluster", "status")
    assert r.returncode == 0, r.stderr
    assert "state:          leader" in r.stdout
    # --host/--port with --cacert mean HTTPS too
    r = ctl("--host", "localhost", "--port", str(b.admin_port), "--cacert", str(certs / "ca.crt"), "--json",
            "sessions")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["count"] == 0
    # -k: no verification at all
    r = ctl("--url", b.https, "-k", "metrics")
    assert r.returncode == 0 and "starling_info" in r.stdout


def test_starlingctl_wrong_ca_fails_with_a_message(https_node, certs, tmp_path):
    other = devcerts.make(tmp_path / "other")
    b = https_node()
    r = ctl("--url", b.https, "--cacert", str(other / "ca.crt"), "cluster", "status")
    assert r.returncode == 1
    assert "certificate verify failed" in r.stderr and b.https in r.stderr
    assert not r.stdout
    # plain http:// to the HTTPS port: unreachable (3), with the hint
    r = ctl("--url", "http://%s:%d" % (b.admin_host, b.admin_port), "cluster", "status")
    assert r.returncode == 3 and "https://" in r.stderr
    # a CA file that cannot be read: one line, exit 1, nothing sent
    r = ctl("--url", b.https, "--cacert", str(tmp_path / "missing.crt"), "cluster", "status")
    assert r.returncode == 1 and "missing.crt" in r.stderr
    r = ctl("--url", "http://%s:%d" % (b.admin_host, b.admin_port), "--cacert", str(certs / "ca.crt"), "metrics")
    assert r.returncode == 2


@pytest.mark.parametrize("settings,expected", [
    ({"admin_certfile": "{d}/missing.crt", "admin_keyfile": "{d}/server.key"},
     "admin_certfile {d}/missing.crt: No such file or directory"),
    ({"admin_certfile": "{d}/server.crt", "admin_keyfile": "{d}/client.key"}, "admin_keyfile {d}/client.key"),
    ({"admin_certfile": "{d}/server.crt"}, "admin_certfile and admin_keyfile go together"),
    ({"admin_cafile": "{d}/ca.crt"}, "admin_cafile needs admin_certfile and admin_keyfile"),
    ({"admin_certfile": "{d}/ca.key", "admin_keyfile": "{d}/server.key"}, "admin_certfile {d}/ca.key"),
])
def test_bad_files_stop_the_start_with_one_line(certs, tmp_path, mosquitto_mode, settings, expected):
    if mosquitto_mode:
        pytest.skip("Starling-specific: the admin API")
    argv = [STARLINGD, "--bind", "127.0.0.1", "-p", str(free_port()), "--data-dir", str(tmp_path / "data"),
            "--set", "cluster_bind=127.0.0.1:%d" % free_port(), "--set", "admin_listen=127.0.0.1:%d" % free_port()]
    for k, v in settings.items():
        argv += ["--set", "%s=%s" % (k, v.format(d=certs))]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("starlingd:")]
    assert len(errors) == 1, r.stderr
    assert expected.format(d=certs) in errors[0]


def node_conf(tmp_path, b, **keys):
    """A config file holding b's admin settings (as the node's own file would)."""
    lines = ["admin_listen %s:%d" % (b.admin_host, b.admin_port)]
    lines += ["%s %s" % (k, v) for k, v in keys.items()]
    path = tmp_path / "node.conf"
    path.write_text("# the node's file\n" + "\n".join(lines) + "\n")
    return str(path)


def test_starlingctl_reads_the_nodes_config_file(https_node, start_broker, certs, tmp_path):
    b = https_node(admin_token="tok3n")
    conf = node_conf(tmp_path, b, admin_certfile=certs / "server.crt", admin_keyfile=certs / "server.key",
                     admin_token="tok3n")
    # https from admin_certfile, the token from admin_token; the CA still from --cacert
    r = ctl("-c", conf, "--cacert", str(certs / "ca.crt"), "cluster", "status")
    assert r.returncode == 0, r.stderr
    assert "state:          leader" in r.stdout
    # --token on the command line wins over the file's
    r = ctl("-c", conf, "--cacert", str(certs / "ca.crt"), "--token", "wrong", "cluster", "status")
    assert r.returncode == 1 and "admin_token" in r.stderr
    # without a CA the system's CAs do not know the development one
    r = ctl("--config", conf, "cluster", "status")
    assert r.returncode == 1 and "certificate verify failed" in r.stderr


def test_starlingctl_config_file_with_admin_cafile(https_node, certs, tmp_path):
    """admin_cafile is also the CA starlingctl checks the node against by default."""
    b = https_node(admin_cafile=str(certs / "ca.crt"))
    conf = node_conf(tmp_path, b, admin_certfile=certs / "server.crt", admin_keyfile=certs / "server.key",
                     admin_cafile=certs / "ca.crt")
    r = ctl("-c", conf, "--cert", str(certs / "client.crt"), "--key", str(certs / "client.key"), "metrics")
    assert r.returncode == 0, r.stderr
    assert "starling_info" in r.stdout


def test_starlingctl_config_file_plain_and_off(start_broker, tmp_path, mosquitto_mode):
    if mosquitto_mode:
        pytest.skip("Starling-specific: the admin API")
    b = start_broker()
    host, port = b.admin_url[len("http://"):].rsplit(":", 1)
    b.admin_host, b.admin_port = host, int(port)
    r = ctl("-c", node_conf(tmp_path, b), "sessions")
    assert r.returncode == 0, r.stderr
    off = tmp_path / "off.conf"
    off.write_text("admin_listen off\n")
    r = ctl("-c", str(off), "sessions")
    assert r.returncode == 2 and "admin_listen is off" in r.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("admin_lissen 127.0.0.1:1\n")
    r = ctl("-c", str(bad), "sessions")
    assert r.returncode == 2 and "bad.conf:1" in r.stderr
