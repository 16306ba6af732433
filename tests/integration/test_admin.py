"""The node's HTTP admin API (admin_listen) and starlingctl against a real
one-node starlingd: status fields, the sessions / subscriptions / retained
listings after real MQTT clients, /metrics, the bearer token, bad requests
(400, 404, 405, 413), garbage and half requests, and starlingctl's output and
exit codes (0 done or nothing to do, 1 refused, 2 usage, 3 unreachable).
Membership changes across several nodes are tested in tests/cluster."""

import http.client
import json
import os
import pathlib
import re
import socket
import subprocess
import time
import urllib.parse

import pytest

from clients import connect_props, opts, sub_props, uid
from conftest import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
STARLINGD = os.environ.get("STARLINGD", str(REPO / "build" / "broker" / "starlingd"))
STARLINGCTL = os.environ.get("STARLINGCTL", str(pathlib.Path(STARLINGD).parents[1] / "tools" / "starlingctl"))
PUB = "/usr/bin/mosquitto_pub"


@pytest.fixture
def node(start_broker):
    """A one-node starlingd with its admin API on a free port."""
    def start(**settings):
        b = start_broker(**settings)
        if b.is_mosquitto:
            pytest.skip("Starling-specific: the admin API")
        host, port = b.admin_url[len("http://"):].rsplit(":", 1)
        b.admin_host, b.admin_port = host, int(port)
        return b
    return start


def request(b, method, path, body=None, headers=None, timeout=10):
    """One request on a fresh connection: (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection(b.admin_host, b.admin_port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get(b, path, **kw):
    status, headers, body = request(b, "GET", path, **kw)
    assert status == 200, "%s: HTTP %d %r" % (path, status, body)
    assert headers["content-type"] == "application/json"
    return json.loads(body)


def error_of(status, headers, body, expected):
    """The JSON error body of a refused request, checked."""
    assert status == expected, "HTTP %d, expected %d: %r" % (status, expected, body)
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["status"] == expected and isinstance(doc["error"], str) and doc["error"]
    return doc


def exchange(b, data, timeout=5):
    """Raw bytes to the admin port; everything that comes back until close."""
    with socket.create_connection((b.admin_host, b.admin_port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def ctl(b, *args, url=True, env=None, timeout=90):
    """Runs starlingctl against b's admin API (url=False: no --url)."""
    if not os.access(STARLINGCTL, os.X_OK):
        pytest.fail("starlingctl not found at %s (build it, or set STARLINGCTL)" % STARLINGCTL, pytrace=False)
    argv = [STARLINGCTL] + (["--url", b.admin_url] if url else []) + list(args)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STARLINGCTL_")}
    full_env.update(env or {})
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                          timeout=timeout)


def wait_until(predicate, what, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for %s" % what
        time.sleep(0.02)


def cluster_bind(b):
    return [a.split("=", 1)[1] for a in b.argv if a.startswith("cluster_bind=")][0]


def publish_retained(b, topic, payload, qos=1):
    """mosquitto_pub -r: returns after the PUBACK, i.e. after the retained
    message was committed."""
    p = subprocess.run([PUB] + b.cli_args() + ["-t", topic, "-r", "-q", str(qos), "-s"],
                       input=payload, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert p.returncode == 0, p.stderr


# --- status ---------------------------------------------------------------------


def test_status_of_a_one_node_cluster(node):
    b = node(node_id=7, cluster_name="blue")
    s = get(b, "/api/v1/status")
    assert s["node"] == 7
    assert s["cluster"] == "blue"
    assert s["leader"] == 7
    assert s["state"] == "leader"
    assert s["term"] >= 1
    assert s["last_index"] >= s["commit_index"] >= 1
    assert 0 <= s["applied_index"] <= s["commit_index"]
    assert s["connections"] == 0
    assert s["subscriptions"] == 0 and s["retained"] == 0
    assert isinstance(s["sessions"], int)
    assert s["members"] == [{"id": 7, "address": cluster_bind(b), "role": "voter", "self": True, "alive": True,
                             "last_seen_ms": 0, "state": "leader", "term": s["term"],
                             "commit_index": s["commit_index"], "applied_index": s["applied_index"]}]


def test_status_counts_follow_clients(node, clients):
    b = node()
    c = clients.connected(b, client_id=uid("st"), version=5)
    c.subscribe("st/a", qos=1)
    c.subscribe("st/b", qos=0)
    publish_retained(b, "st/r", b"kept")
    s = get(b, "/api/v1/status")
    assert s["connections"] == 1
    assert s["subscriptions"] == 2
    assert s["retained"] == 1, "$SYS messages are this node's, not counted"
    assert s["sessions"] >= 1


# --- listings ---------------------------------------------------------------------


def test_sessions_listing(node, clients):
    b = node()
    cid = uid("sess")
    c = clients.connected(b, client_id=cid, version=5, clean_start=False,
                          properties=connect_props(SessionExpiryInterval=300))
    c.subscribe("adm/#", qos=1)
    v3 = uid("v3")
    clients.connected(b, client_id=v3, version=4, clean=False)

    doc = get(b, "/api/v1/sessions")
    byid = {s["client_id"]: s for s in doc["sessions"]}
    assert doc["count"] == len(doc["sessions"]) >= 2
    assert [s["client_id"] for s in doc["sessions"]] == sorted(byid), "sorted by client id"
    want = {"client_id": cid, "node": 1, "connected": True, "expiry": 300, "subscriptions": 1,
            "queued": 0, "inflight": 0, "durable_queued": 0}
    if b.auth:  # the suites' authentication mode: the session's user is listed
        want["username"] = b.auth[0]
    assert byid[cid] == want
    assert byid[v3]["expiry"] is None, "a v3.1.1 persistent session never expires"

    one = get(b, "/api/v1/sessions?client_id=" + cid)
    assert one["count"] == 1 and one["sessions"] == [byid[cid]]
    assert get(b, "/api/v1/sessions?client_id=nobody") == {"count": 0, "sessions": []}
    limited = get(b, "/api/v1/sessions?limit=1")
    assert limited["count"] == doc["count"] and len(limited["sessions"]) == 1
    assert get(b, "/api/v1/sessions?limit=0")["sessions"] == []

    c.disconnect()
    wait_until(lambda: get(b, "/api/v1/sessions?client_id=" + cid)["sessions"][0]["connected"] is False,
               "the session to show its client gone")


def test_client_ids_are_percent_decoded(node, clients):
    b = node()
    cid = "adm id/é+%&=?#"
    clients.connected(b, client_id=cid, version=5)
    q = urllib.parse.quote(cid, safe="")
    doc = get(b, "/api/v1/sessions?client_id=" + q)
    assert doc["count"] == 1 and doc["sessions"][0]["client_id"] == cid
    r = ctl(b, "sessions", cid)
    assert r.returncode == 0, r.stderr
    assert cid in r.stdout and "1 session" in r.stdout


def test_subscriptions_listing(node, clients):
    b = node()
    cid = uid("subs")
    c = clients.connected(b, client_id=cid, version=5)
    c.subscribe("adm/+/x", options=opts(qos=1, no_local=True, retain_as_published=True, retain_handling=1),
                properties=sub_props(SubscriptionIdentifier=5))
    c.subscribe("adm/#", qos=0)
    other = clients.connected(b, client_id=uid("other"), version=4)
    other.subscribe("$share/g/adm/s", qos=2)

    doc = get(b, "/api/v1/subscriptions?client_id=" + cid)
    assert doc == {"count": 2, "subscriptions": [
        {"client_id": cid, "filter": "adm/#", "qos": 0, "no_local": False, "retain_as_published": False,
         "retain_handling": 0, "subscription_id": None, "node": 1},
        {"client_id": cid, "filter": "adm/+/x", "qos": 1, "no_local": True, "retain_as_published": True,
         "retain_handling": 1, "subscription_id": 5, "node": 1},
    ]}
    every = get(b, "/api/v1/subscriptions")
    assert every["count"] == 3
    assert {"$share/g/adm/s"} == {s["filter"] for s in every["subscriptions"] if s["client_id"] != cid}
    assert len(get(b, "/api/v1/subscriptions?limit=2")["subscriptions"]) == 2
    assert get(b, "/api/v1/subscriptions?client_id=nobody") == {"count": 0, "subscriptions": []}


def test_retained_listing(node):
    b = node()
    publish_retained(b, "adm/text", "héllo".encode())
    publish_retained(b, "adm/bin", b"\x00\xff\xfe", qos=0)
    publish_retained(b, "other/t", b"x", qos=2)
    doc = get(b, "/api/v1/retained")
    assert doc["count"] == 3
    assert [r["topic"] for r in doc["retained"]] == ["adm/bin", "adm/text", "other/t"]
    binary, text, other = doc["retained"]
    assert text == {"topic": "adm/text", "qos": 1, "payload_bytes": 6, "payload": "héllo",
                    "payload_base64": "aMOpbGxv"}
    assert binary["payload"] is None and binary["payload_base64"] == "AP/+" and binary["payload_bytes"] == 3
    assert other["qos"] == 2

    assert get(b, "/api/v1/retained?topic=adm/text")["count"] == 1
    assert [r["topic"] for r in get(b, "/api/v1/retained?topic=adm/%23")["retained"]] == ["adm/bin", "adm/text"]
    assert get(b, "/api/v1/retained?topic=%2B/t")["count"] == 1
    assert get(b, "/api/v1/retained?topic=nothing/here")["count"] == 0
    limited = get(b, "/api/v1/retained?limit=1")
    assert limited["count"] == 3 and len(limited["retained"]) == 1

    topics = [r["topic"] for r in get(b, "/api/v1/retained?sys=1")["retained"]]
    assert "$SYS/broker/version" in topics, "this node's $SYS messages with sys=1"
    assert not any(t.startswith("$SYS") for t in [r["topic"] for r in doc["retained"]])
    error_of(*request(b, "GET", "/api/v1/retained?topic=a/%23/b"), 400)
    error_of(*request(b, "GET", "/api/v1/retained?sys=yes"), 400)


# --- metrics ---------------------------------------------------------------------------


def metrics(b):
    status, headers, body = request(b, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = int(value)
    return values


def test_metrics(node, clients):
    b = node()
    before = metrics(b)
    assert before["starling_connections"] == 0
    assert before['starling_cluster_role{role="leader"}'] == 1
    assert before['starling_cluster_role{role="follower"}'] == 0
    assert before["starling_cluster_members"] == 1
    assert before["starling_cluster_leader"] == 1
    assert before["starling_cluster_term"] >= 1
    assert before["starling_cluster_commit_index"] >= 1
    c = clients.connected(b, version=5)
    for i in range(5):
        c.publish("m/%d" % i, b"x", qos=1)
    publish_retained(b, "m/r", b"r")
    after = metrics(b)
    assert after["starling_connections"] == 1
    assert after["starling_messages_received_total"] - before["starling_messages_received_total"] >= 6
    assert after["starling_bytes_received_total"] > before["starling_bytes_received_total"]
    assert after["starling_connections_total"] - before["starling_connections_total"] >= 2
    assert after["starling_retained"] == 1
    assert after["starling_cluster_commit_index"] > before["starling_cluster_commit_index"]
    r = ctl(b, "metrics")
    assert r.returncode == 0 and "# TYPE starling_messages_received_total counter" in r.stdout


# --- token -----------------------------------------------------------------------------


def test_token_is_required_when_set(node):
    b = node(admin_token="s3cret-token")
    for path in ("/api/v1/status", "/metrics", "/api/v1/sessions"):
        status, headers, body = request(b, "GET", path)
        error_of(status, headers, body, 401)
        assert headers["www-authenticate"].startswith("Bearer")
    error_of(*request(b, "GET", "/api/v1/status", headers={"Authorization": "Bearer wrong"}), 401)
    error_of(*request(b, "GET", "/api/v1/status", headers={"Authorization": "Basic s3cret-token"}), 401)
    error_of(*request(b, "POST", "/api/v1/cluster/leave", headers={"Authorization": "Bearer s3cret-tokenX"}), 401)
    assert get(b, "/api/v1/status", headers={"Authorization": "Bearer s3cret-token"})["node"] == 1

    r = ctl(b, "cluster", "status")
    assert r.returncode == 1 and "admin_token" in r.stderr
    assert ctl(b, "--token", "s3cret-token", "cluster", "status").returncode == 0
    r = ctl(b, "cluster", "status", env={"STARLINGCTL_TOKEN": "s3cret-token"})
    assert r.returncode == 0, r.stderr


# --- bad requests ------------------------------------------------------------------------


def test_unknown_paths_and_methods(node):
    b = node()
    error_of(*request(b, "GET", "/api/v1/nope"), 404)
    error_of(*request(b, "GET", "/index.htm"), 404)  # "/" is the dashboard (test_dashboard.py)
    error_of(*request(b, "GET", "/api/v1/status/"), 404)
    status, headers, body = request(b, "POST", "/api/v1/status", body=b"{}")
    error_of(status, headers, body, 405)
    assert headers["allow"] == "GET"
    status, headers, body = request(b, "GET", "/api/v1/cluster/leave")
    error_of(status, headers, body, 405)
    assert headers["allow"] == "POST"
    error_of(*request(b, "DELETE", "/api/v1/sessions"), 405)


@pytest.mark.parametrize("query", ["limit=abc", "limit=-1", "limit=1x", "limit=", "limit=1000001",
                                   "limit=99999999999999999999999", "client_id=%zz", "client_id=a%2",
                                   "client_id=%00"])
def test_bad_query_strings(node, query):
    b = node()
    error_of(*request(b, "GET", "/api/v1/sessions?" + query), 400)


@pytest.mark.parametrize("path,body", [
    ("/api/v1/cluster/remove", b""),
    ("/api/v1/cluster/remove", b"{}"),
    ("/api/v1/cluster/remove", b'{"node": 0}'),
    ("/api/v1/cluster/remove", b'{"node": "2"}'),
    ("/api/v1/cluster/remove", b'{"node": 2.5}'),
    ("/api/v1/cluster/transfer", b'{"node": 70000}'),
    ("/api/v1/cluster/transfer", b"not json"),
    ("/api/v1/cluster/transfer", b'{"node": 1} trailing'),
    ("/api/v1/cluster/join", b'{}'),
    ("/api/v1/cluster/join", b'{"peer": 4370}'),
    ("/api/v1/cluster/join", b'{"peer": "no-port"}'),
    ("/api/v1/cluster/leave", b"[1, 2]"),
])
def test_bad_bodies(node, path, body):
    b = node()
    error_of(*request(b, "POST", path, body=body, headers={"Content-Type": "application/json"}), 400)


def test_too_large_requests_get_413(node):
    b = node()
    # declared too large: refused before the body is sent
    out = exchange(b, b"POST /api/v1/cluster/transfer HTTP/1.1\r\nContent-Length: 70000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
    assert b'"status":413' in out
    # a body that arrives, beyond 64 KiB
    out = exchange(b, b"POST /api/v1/cluster/transfer HTTP/1.1\r\nContent-Length: 66000\r\n\r\n" + b" " * 66000)
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
    # headers beyond 64 KiB
    out = exchange(b, b"GET /api/v1/status HTTP/1.1\r\nX-Filler: " + b"a" * 70000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
    # chunked, beyond 64 KiB
    chunk = b"%x\r\n%s\r\n" % (8192, b"x" * 8192)
    out = exchange(b, b"POST /api/v1/cluster/transfer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 9)
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
    # just below the limit is parsed (and refused as a body, not as a size)
    body = b'{"node": 2}' + b" " * (60000)
    status, headers, text = request(b, "POST", "/api/v1/cluster/transfer", body=body)
    assert status == 404, text
    assert get(b, "/api/v1/status")["node"] == 1


def test_keep_alive_and_pipelining(node):
    b = node()
    conn = http.client.HTTPConnection(b.admin_host, b.admin_port, timeout=10)
    for _ in range(3):
        conn.request("GET", "/api/v1/status")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Connection") == "keep-alive"
        json.loads(r.read())
    conn.close()
    pipelined = (b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /nope HTTP/1.1\r\n\r\n"
                 b"POST /api/v1/cluster/transfer HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"node\": 9}"
                 b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
    out = exchange(b, pipelined)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
    assert statuses == [b"200", b"404", b"404", b"200"], out[:400]
    assert out.rstrip().endswith(b"starling_cluster_role{role=\"unavailable\"} 0")
    out = exchange(b, b"GET /api/v1/status HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in out


def test_garbage_and_half_requests_do_not_hurt(node, clients):
    b = node()
    out = exchange(b, b"\x00\x01\x02 garbage \xff\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    out = exchange(b, b"GET /api/v1/status HTTP/9.9\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 505 "), out[:200]
    out = exchange(b, b"GET /api/v1/status HTTP/1.1\r\nBad Header Line\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    for half in (b"GET /api/v1/sta", b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n",
                 b"POST /api/v1/cluster/remove HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"no",
                 b"POST /api/v1/cluster/remove HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"no"):
        for _ in range(5):
            s = socket.create_connection((b.admin_host, b.admin_port))
            s.sendall(half)
            s.close()
    # a connection that says nothing does not block the others
    idle = socket.create_connection((b.admin_host, b.admin_port))
    # an operation whose connection is gone before the answer comes
    for _ in range(5):
        s = socket.create_connection((b.admin_host, b.admin_port))
        s.sendall(b"POST /api/v1/cluster/transfer HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        s.close()
    assert get(b, "/api/v1/status")["state"] == "leader"
    c = clients.connected(b, version=5)
    c.subscribe("still/works", qos=1)
    c.publish("still/works", b"yes", qos=1)
    assert c.expect_message().payload == b"yes"
    idle.close()


# --- starlingctl -------------------------------------------------------------------------------


def test_ctl_cluster_status(node):
    b = node(node_id=3)
    r = ctl(b, "cluster", "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for expected in ("node:           3", "cluster:        starling", "state:          leader",
                     "leader:         node 3"):
        assert expected in lines, r.stdout
    for label in ("term:", "commit index:", "applied index:", "clients:"):
        assert any(line.startswith(label) for line in lines), r.stdout
    header = [line for line in lines if line.startswith("ID ")][0]
    assert header.split() == ["ID", "ADDRESS", "ROLE", "STATE", "REACHABLE", "LAST", "SEEN", "APPLIED"]
    member = lines[lines.index(header) + 1].split()
    assert member[0] == "3*" and member[2:5] == ["voter", "leader", "self"]

    r = ctl(b, "--json", "cluster", "status")
    assert r.returncode == 0 and json.loads(r.stdout)["node"] == 3
    host, port = b.admin_host, str(b.admin_port)
    assert ctl(b, "--host", host, "--port", port, "cluster", "status", url=False).returncode == 0
    r = ctl(b, "cluster", "status", url=False, env={"STARLINGCTL_URL": b.admin_url})
    assert r.returncode == 0 and "node:           3" in r.stdout


def test_ctl_listings(node, clients):
    b = node()
    cid = uid("ctl")
    c = clients.connected(b, client_id=cid, version=5)
    c.subscribe("ctl/+/t", qos=1)
    publish_retained(b, "ctl/a/t", b"payload text")
    publish_retained(b, "ctl/b/t", b"\xff\xfe", qos=0)

    r = ctl(b, "sessions")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["CLIENT", "ID", "NODE", "CONNECTED", "EXPIRY", "SUBS", "QUEUED",
                                                "INFLIGHT"]
    row = [line.split() for line in r.stdout.splitlines() if line.startswith(cid)][0]
    assert row == [cid, "1", "yes", "0", "s", "1", "0", "0"]

    r = ctl(b, "subscriptions", cid)
    assert r.returncode == 0, r.stderr
    assert [line.split()[:3] for line in r.stdout.splitlines()[1:-1]] == [[cid, "ctl/+/t", "1"]]
    assert r.stdout.splitlines()[-1] == "1 subscription"

    r = ctl(b, "retained", "ctl/#")
    assert r.returncode == 0, r.stderr
    rows = [line.split(None, 3) for line in r.stdout.splitlines()[1:-1]]
    assert rows == [["ctl/a/t", "1", "12", "payload text"], ["ctl/b/t", "0", "2", "(binary)"]]
    assert r.stdout.splitlines()[-1] == "2 retained messages"

    r = ctl(b, "retained", "--limit", "1")
    assert r.returncode == 0
    assert r.stdout.splitlines()[-1].startswith("1 of 2 retained messages")
    r = ctl(b, "--json", "subscriptions")
    assert r.returncode == 0 and json.loads(r.stdout)["count"] == 1
    r = ctl(b, "sessions", "nobody")
    assert r.returncode == 0 and r.stdout.strip() == "0 sessions"


def test_ctl_refusals_on_a_one_node_cluster(node):
    b = node()
    r = ctl(b, "cluster", "transfer")
    assert r.returncode == 1 and "no other voter" in r.stderr, r
    r = ctl(b, "cluster", "leave")
    assert r.returncode == 1 and "only member" in r.stderr, r
    r = ctl(b, "cluster", "remove", "9")
    assert r.returncode == 1 and "node 9 is not a member" in r.stderr, r
    r = ctl(b, "cluster", "transfer", "1")
    assert r.returncode == 0 and r.stdout.startswith("nothing to do: node 1 is already the leader"), r
    r = ctl(b, "cluster", "join", cluster_bind(b))
    assert r.returncode == 0 and r.stdout.startswith("nothing to do:"), r
    r = ctl(b, "cluster", "join", "127.0.0.1:%d" % free_port())
    assert r.returncode == 1 and "cluster_secret" in r.stderr, r
    r = ctl(b, "--json", "cluster", "leave")
    assert r.returncode == 1 and json.loads(r.stdout)["status"] == 409
    assert get(b, "/api/v1/status")["state"] == "leader", "the node keeps running"


@pytest.mark.parametrize("args,message", [
    ([], "no command"),
    (["bogus"], "unknown command"),
    (["cluster"], "cluster needs one of"),
    (["cluster", "bogus"], "unknown cluster command"),
    (["cluster", "remove"], "needs one NODE_ID"),
    (["cluster", "remove", "abc"], "not a node id"),
    (["cluster", "remove", "0"], "not a node id"),
    (["cluster", "transfer", "1", "2"], "takes at most one NODE_ID"),
    (["cluster", "join"], "needs HOST:PORT"),
    (["cluster", "join", "nocolon"], "not HOST:PORT"),
    (["cluster", "status", "extra"], "takes no argument"),
    (["sessions", "a", "b"], "unexpected argument"),
    (["metrics", "x"], "unexpected argument"),
    (["--limit", "x", "sessions"], "--limit"),
    (["--limit", "5", "metrics"], "--limit goes with"),
    (["--timeout", "0", "sessions"], "--timeout"),
    (["--bogus", "sessions"], "unknown option"),
    (["--url"], "needs a value"),
    (["--url", "ftp://127.0.0.1:1", "sessions"], "only http://HOST:PORT and https://"),
    (["--url", "http://127.0.0.1:1", "--cacert", "/x", "sessions"], "go with an https:// URL"),
    (["--url", "https://127.0.0.1:1", "--cert", "/x", "sessions"], "--cert and --key go together"),
    (["--url", "http://127.0.0.1:1/api", "sessions"], "without a path"),
    (["--url", "http://127.0.0.1:1", "--port", "2", "sessions"], "either --url or --host"),
    (["--port", "70000", "sessions"], "not a number 1..65535"),
])
def test_ctl_usage_errors(args, message):
    p = subprocess.run([STARLINGCTL] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
    assert p.returncode == 2, (args, p.returncode, p.stderr)
    assert message in p.stderr and p.stderr.startswith("starlingctl: "), p.stderr
    assert p.stdout == ""


def test_ctl_help_and_version():
    p = subprocess.run([STARLINGCTL, "--help"], stdout=subprocess.PIPE, text=True, timeout=20)
    assert p.returncode == 0 and p.stdout.startswith("Usage: starlingctl")
    for word in ("cluster status", "cluster join", "cluster leave", "cluster remove", "cluster transfer", "sessions",
                 "subscriptions", "retained", "metrics", "--json", "--token", "--timeout", "Exit status"):
        assert word in p.stdout
    p = subprocess.run([STARLINGCTL, "--version"], stdout=subprocess.PIPE, text=True, timeout=20)
    assert p.returncode == 0 and p.stdout.startswith("starlingctl ")


def test_ctl_unreachable_node():
    url = "http://127.0.0.1:%d" % free_port()
    p = subprocess.run([STARLINGCTL, "--url", url, "cluster", "status"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=20)
    assert p.returncode == 3, p
    assert url in p.stderr and "Connection refused" in p.stderr
    env = dict(os.environ, STARLINGCTL_URL=url)
    p = subprocess.run([STARLINGCTL, "sessions"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=20, env=env)
    assert p.returncode == 3 and url in p.stderr
    # a port that accepts and never answers: the timeout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        silent = "http://127.0.0.1:%d" % s.getsockname()[1]
        t0 = time.monotonic()
        p = subprocess.run([STARLINGCTL, "--url", silent, "--timeout", "0.5", "metrics"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=20)
        assert p.returncode == 3 and "no answer within 0.5 s" in p.stderr, p
        assert time.monotonic() - t0 < 5


# --- configuration ------------------------------------------------------------------------------


def test_admin_off(start_broker, mosquitto_mode):
    if mosquitto_mode:
        pytest.skip("Starling-specific: the admin API")
    b = start_broker(admin_listen="off")
    assert b.admin_url is None
    assert "admin API on" not in b.log()


def test_admin_port_in_use_is_a_startup_error(tmp_path, mosquitto_mode):
    if mosquitto_mode:
        pytest.skip("Starling-specific: the admin API")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        taken = "127.0.0.1:%d" % s.getsockname()[1]
        p = subprocess.run([STARLINGD, "--bind", "127.0.0.1", "-p", str(free_port()), "--data-dir",
                            str(tmp_path / "data"), "--set", "cluster_bind=127.0.0.1:%d" % free_port(),
                            "--set", "admin_listen=" + taken], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=30)
    assert p.returncode == 1, p.stderr
    assert "admin_listen %s: address already in use" % taken in p.stderr
