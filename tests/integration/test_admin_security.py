"""Who may use the admin API: an admin_listen beyond loopback without an
admin_token refuses to start (one line, exit code 1); with a token it serves;
a short token is warned about; requests with no or a wrong token get 401 and
are counted (starling_admin_unauthorized_total) and logged with the caller's
address, at most a line a second; membership operations are logged with the
caller's address and their outcome. Real starlingd, real HTTP over loopback."""

import http.client
import json
import re
import secrets
import subprocess
import time

import pytest

from conftest import STARLINGD, free_port


@pytest.fixture
def node(start_broker, mosquitto_mode):
    """A one-node starlingd; an admin API bound to 0.0.0.0 is reached on
    127.0.0.1."""
    if mosquitto_mode:
        pytest.skip("Starling-specific: the admin API")

    def start(**settings):
        b = start_broker(**settings)
        host, port = b.admin_url[len("http://"):].rsplit(":", 1)
        b.admin_host = "127.0.0.1" if host == "0.0.0.0" else host.strip("[]")
        b.admin_port = int(port)
        return b
    return start


def call(b, method, path, body=None, token=None):
    """One request on a fresh connection: (status, JSON or text body, the
    caller's address as the node logs it)."""
    conn = http.client.HTTPConnection(b.admin_host, b.admin_port, timeout=10)
    try:
        conn.connect()
        ip, port = conn.sock.getsockname()[:2]
        caller = ("[%s]:%d" if ":" in ip else "%s:%d") % (ip, port)
        headers = {"Authorization": "Bearer " + token} if token is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        if r.getheader("Content-Type", "").startswith("application/json"):
            data = json.loads(data)
        return r.status, data, caller
    finally:
        conn.close()


def unauthorized(b, token):
    status, text, _ = call(b, "GET", "/metrics", token=token)
    assert status == 200, (status, text)
    found = re.search(r"^starling_admin_unauthorized_total (\d+)$", text.decode(), re.M)
    assert found, "no starling_admin_unauthorized_total in /metrics"
    return int(found.group(1))


def wait_log(b, pattern, timeout=5):
    """The first match of pattern in b's stderr, waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, b.log(), re.M)
        if found or time.monotonic() > deadline:
            assert found, "no line matching %r in the log:\n%s" % (pattern, b.log()[-3000:])
            return found
        time.sleep(0.02)


def run_starlingd(tmp_path, **settings):
    """starlingd run to its exit (it is expected to refuse to start)."""
    argv = [STARLINGD, "--bind", "127.0.0.1", "-p", str(free_port()), "--data-dir", str(tmp_path / "data"),
            "--set", "cluster_bind=127.0.0.1:%d" % free_port()]
    for key, value in settings.items():
        argv += ["--set", "%s=%s" % (key, value)]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=30)


# --- where it listens ----------------------------------------------------------------------


@pytest.mark.parametrize("listen", ["0.0.0.0:%d", "[::]:%d", "192.0.2.1:%d", "[2001:db8::1]:%d"])
def test_non_loopback_without_token_refuses_to_start(tmp_path, mosquitto_mode, listen):
    if mosquitto_mode:
        pytest.skip("Starling-specific: the admin API")
    listen = listen % free_port()
    p = run_starlingd(tmp_path, admin_listen=listen)
    assert p.returncode == 1, p.stderr
    assert p.stderr.splitlines() == [
        "starlingd: admin_listen %s is reachable from other machines and admin_token is not set: "
        "set admin_token (16+ random characters) or bind admin_listen to 127.0.0.1" % listen], p.stderr
    # refused before anything started: the MQTT and cluster ports were never opened
    assert "listening on" not in p.stderr and "cluster:" not in p.stderr


def test_an_empty_token_is_no_token(tmp_path, mosquitto_mode):
    if mosquitto_mode:
        pytest.skip("Starling-specific: the admin API")
    p = run_starlingd(tmp_path, admin_listen="0.0.0.0:%d" % free_port(), admin_token="")
    assert p.returncode == 1 and "admin_token is not set" in p.stderr, p.stderr


def test_non_loopback_with_token_serves(node):
    token = secrets.token_hex(16)
    b = node(admin_listen="0.0.0.0:%d" % free_port(), admin_token=token)
    status, doc, _ = call(b, "GET", "/api/v1/status", token=token)
    assert status == 200 and doc["node"] == 1
    assert call(b, "GET", "/api/v1/status")[0] == 401
    assert "admin_token is" not in b.log()  # 32 characters: no warning


@pytest.mark.parametrize("listen", ["127.0.0.1:%d", "127.0.0.2:%d", "[::1]:%d"])
def test_loopback_needs_no_token(node, listen):
    b = node(admin_listen=listen % free_port())
    assert call(b, "GET", "/api/v1/status")[0] == 200


# --- the token --------------------------------------------------------------------------------


def test_short_token_is_warned_about(node):
    b = node(admin_token="abc123")
    wait_log(b, r" warn admin_token is 6 characters long: it can be guessed; use 16 or more")
    assert call(b, "GET", "/api/v1/status", token="abc123")[0] == 200
    b = node(admin_token="0123456789abcdef")
    assert call(b, "GET", "/api/v1/status", token="0123456789abcdef")[0] == 200
    assert "admin_token is" not in b.log()


def test_wrong_token_is_401_counted_and_logged(node):
    token = secrets.token_hex(16)
    b = node(admin_token=token)
    assert unauthorized(b, token) == 0
    status, doc, caller = call(b, "GET", "/api/v1/status", token=token[:-1] + "x")
    assert status == 401 and doc["status"] == 401
    wait_log(b, r" info admin %s: GET with a wrong token: 401$" % re.escape(caller))
    status, _, _ = call(b, "POST", "/api/v1/cluster/remove", body='{"node": 1}')
    assert status == 401
    status, _, _ = call(b, "GET", "/api/v1/status", token=token + token)
    assert status == 401
    assert unauthorized(b, token) == 3
    # a request that was refused for its token did nothing
    assert "cluster remove" not in b.log()


def test_401_lines_are_limited_not_the_count(node):
    """Tokens tried in a loop: every attempt is counted, the log gets at most
    a line a second, and the next line says how many it left out."""
    token = secrets.token_hex(16)
    b = node(admin_token=token)
    sent = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert call(b, "GET", "/metrics", token="guess%d" % sent)[0] == 401
        sent += 1
        found = re.search(r"GET with a wrong token: 401 \(and (\d+) more unlogged since the last line\)", b.log())
        if found:
            break
    assert found, "no summary line after %d attempts:\n%s" % (sent, b.log()[-3000:])
    lines = re.findall(r"with a wrong token: 401", b.log())
    assert len(lines) == 2 and int(found.group(1)) == sent - 2 > 0, (sent, lines, found.group(0))
    assert unauthorized(b, token) == sent


# --- membership operations ----------------------------------------------------------------------


def test_membership_operations_are_logged_with_caller_and_outcome(node):
    b = node()
    status, doc, caller = call(b, "POST", "/api/v1/cluster/remove", body='{"node": 7}')
    assert status == 404, doc
    who = re.escape(caller)
    wait_log(b, r" info admin %s: cluster remove node 7: requested$" % who)
    wait_log(b, r" info admin %s: cluster remove node 7: 404 \S" % who)

    # the only voter cannot hand leadership to anybody
    status, doc, caller = call(b, "POST", "/api/v1/cluster/transfer")
    assert status == 409, doc
    wait_log(b, r" info admin %s: cluster transfer: 409 \S" % re.escape(caller))

    # malformed: refused before it starts, logged all the same
    status, doc, caller = call(b, "POST", "/api/v1/cluster/join", body='{"peer": 5}')
    assert status == 400, doc
    wait_log(b, r" info admin %s: cluster join: 400 %s$" % (re.escape(caller), re.escape(doc["error"])))

    # a read is not a membership operation
    status, _, caller = call(b, "GET", "/api/v1/status")
    assert status == 200
    assert caller not in b.log()
