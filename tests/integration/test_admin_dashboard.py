"""What the web dashboard (docs/dashboard.md) needs from the admin API, on a
real one-node starlingd with real MQTT clients: paging (?offset) and search
(?q) in the sessions, subscriptions and retained listings; POST
/api/v1/sessions/disconnect (the client gets DISCONNECT 0x98) and POST
/api/v1/retained/delete (the message is gone for new subscribers); GET
/api/v1/events (text/event-stream, a snapshot a second, at most 8 streams,
a closed one makes room); the page's files served without the token while
everything else still needs it. The page itself runs in a browser in
tests/cluster/test_dashboard.py."""

import json
import socket
import time

import rawmqtt
from clients import connect_props, uid
from test_admin import error_of, get, node, publish_retained, request, wait_until  # noqa: F401 (node: fixture)


def names(listing, kind, key):
    return [x[key] for x in listing[kind]]


def post(b, path, doc, **kw):
    return request(b, "POST", path, body=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}, **kw)


# --- paging and search ------------------------------------------------------------


def test_retained_paging_and_search(node):
    b = node()
    for i in range(7):
        publish_retained(b, "dash/a%d" % i, b"v%d" % i)
    publish_retained(b, "other/x", b"w")
    page = get(b, "/api/v1/retained?q=dash/&limit=3&offset=2")
    assert page["count"] == 7 and names(page, "retained", "topic") == ["dash/a2", "dash/a3", "dash/a4"]
    page = get(b, "/api/v1/retained?q=dash/&limit=3&offset=6")
    assert page["count"] == 7 and names(page, "retained", "topic") == ["dash/a6"]
    page = get(b, "/api/v1/retained?offset=100")
    assert page["count"] == 8 and page["retained"] == []
    page = get(b, "/api/v1/retained?topic=dash/%23&q=a1")
    assert page["count"] == 1 and names(page, "retained", "topic") == ["dash/a1"]
    page = get(b, "/api/v1/retained?q=")  # an empty search is no search
    assert page["count"] == 8
    for bad in ("offset=abc", "offset=-1", "offset=", "offset=99999999999999999999999"):
        error_of(*request(b, "GET", "/api/v1/retained?" + bad), 400)


def test_sessions_and_subscriptions_paging_and_search(node, clients):
    b = node()
    tag = uid("dash")
    for suffix in ("1", "2", "3"):
        c = clients.connected(b, client_id="%s-%s" % (tag, suffix))
        c.subscribe("rooms/%s/+" % suffix, qos=1)
    clients.connected(b, client_id=uid("other")).subscribe("elsewhere/#")
    page = get(b, "/api/v1/sessions?q=%s&limit=1&offset=1" % tag)
    assert page["count"] == 3 and names(page, "sessions", "client_id") == ["%s-2" % tag]
    page = get(b, "/api/v1/sessions?q=%s&offset=3" % tag)
    assert page["count"] == 3 and page["sessions"] == []
    assert get(b, "/api/v1/sessions")["count"] == 4
    # subscriptions: the search looks at client ids and filters
    page = get(b, "/api/v1/subscriptions?q=rooms/")
    assert page["count"] == 3 and names(page, "subscriptions", "filter") == ["rooms/1/+", "rooms/2/+", "rooms/3/+"]
    page = get(b, "/api/v1/subscriptions?q=%s-3" % tag)
    assert page["count"] == 1 and names(page, "subscriptions", "filter") == ["rooms/3/+"]
    page = get(b, "/api/v1/subscriptions?q=rooms/&offset=2&limit=5")
    assert names(page, "subscriptions", "filter") == ["rooms/3/+"]


# --- operations ----------------------------------------------------------------------


def test_disconnect_a_client(node, raw):
    b = node()
    c = raw(b, version=5)
    cid = uid("victim")
    c.connect(cid)
    status, headers, body = post(b, "/api/v1/sessions/disconnect", {"client_id": cid})
    assert status == 200 and json.loads(body)["result"] == "ok", body
    got = c.recv_until_closed(timeout=10)
    assert [(p.type, p.reason) for p in got] == [(rawmqtt.DISCONNECT, 0x98)], got  # Administrative action
    wait_until(lambda: get(b, "/api/v1/status")["connections"] == 0, "the connection to end")

    error_of(*post(b, "/api/v1/sessions/disconnect", {"client_id": "nobody-" + uid()}), 404)
    for bad in (b"", b"[]", b"{}", b'{"client_id": 5}', b'{"client_id": ""}', b"not json"):
        error_of(*request(b, "POST", "/api/v1/sessions/disconnect", body=bad), 400)
    error_of(*request(b, "GET", "/api/v1/sessions/disconnect"), 405)


def test_disconnect_refuses_a_session_without_connection(node, clients):
    b = node()
    c = clients.connected(b, client_id=uid("asleep"), properties=connect_props(SessionExpiryInterval=300))
    c.disconnect()
    # the session stays (its expiry), without a connection
    wait_until(lambda: get(b, "/api/v1/status")["connections"] == 0, "the client to leave")
    assert get(b, "/api/v1/sessions?client_id=" + c.client_id)["count"] == 1
    doc = error_of(*post(b, "/api/v1/sessions/disconnect", {"client_id": c.client_id}), 409)
    assert doc["error"] == "the client is not connected"


def test_clear_a_retained_message(node, clients):
    b = node()
    publish_retained(b, "dash/clear/me", b"old")
    publish_retained(b, "dash/keep/me", b"kept")
    status, _, body = post(b, "/api/v1/retained/delete", {"topic": "dash/clear/me"})
    assert status == 200 and json.loads(body)["message"] == "cleared", body
    assert names(get(b, "/api/v1/retained?topic=dash/%23"), "retained", "topic") == ["dash/keep/me"]
    sub = clients.connected(b)
    sub.subscribe("dash/#", qos=1)
    assert sub.expect_message().topic == "dash/keep/me"
    sub.expect_no_message()
    doc = error_of(*post(b, "/api/v1/retained/delete", {"topic": "dash/clear/me"}), 404)
    assert doc["error"] == "no retained message on this topic"
    error_of(*post(b, "/api/v1/retained/delete", {"topic": "dash/#"}), 400)
    error_of(*post(b, "/api/v1/retained/delete", {"topic": "$SYS/broker/uptime"}), 404)  # local, not replicated
    error_of(*request(b, "POST", "/api/v1/retained/delete", body=b'{"topic": 1}'), 400)


# --- the event stream -------------------------------------------------------------------


class Stream:
    """A raw GET /api/v1/events, from source (a loopback address) when given."""

    def __init__(self, b, headers=b"", source=None):
        self.sock = socket.create_connection((b.admin_host, b.admin_port), timeout=10,
                                             source_address=(source, 0) if source else None)
        self.sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        self.data = b""
        self.taken = 0

    def head(self, timeout=10):
        self._until(lambda: b"\r\n\r\n" in self.data, timeout)
        return self.data.partition(b"\r\n\r\n")[0].decode()

    def events(self, n, timeout=10):
        """The next n snapshots, as dicts."""
        def body():
            return self.data.partition(b"\r\n\r\n")[2]
        self._until(lambda: body().count(b"\n\n") >= self.taken + n, timeout)
        chunks = body().split(b"\n\n")[self.taken:self.taken + n]
        self.taken += n
        assert all(c.startswith(b"event: snapshot\ndata: ") for c in chunks), chunks
        return [json.loads(c.split(b"data: ", 1)[1]) for c in chunks]

    def _until(self, done, timeout):
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the stream stalled: %r" % self.data[-500:]
            chunk = self.sock.recv(65536)
            assert chunk, "the stream ended: %r" % self.data[-500:]
            self.data += chunk

    def close(self):
        self.sock.close()


def test_event_stream_snapshots(node):
    b = node()
    s = Stream(b)
    try:
        head = s.head()
        assert head.startswith("HTTP/1.1 200") and "Content-Type: text/event-stream" in head
        assert "Content-Length" not in head
        first = s.events(1)[0]
        publish_retained(b, "dash/stream", b"x")
        later = s.events(2)
    finally:
        s.close()
    snap = later[-1]
    assert snap["node"] == 1 and snap["leader"] == 1 and len(snap["members"]) == 1
    assert snap["retained"] == 1 and snap["messages_received"] >= 1
    assert later[0]["time_ms"] < snap["time_ms"]
    # the retained publish was committed: one more commit, and its time
    assert snap["commits"] > first["commits"] and snap["commit_us_total"] > first["commit_us_total"]


def test_event_streams_are_bounded(node):
    """At most 8 streams, at most 4 from one address (the other half of its
    admin_max_conns_per_peer stays for requests); a closed stream makes room."""
    b = node()
    streams = []
    try:
        for i in range(4):
            streams.append(Stream(b))
            streams[-1].events(1)
        doc = error_of(*request(b, "GET", "/api/v1/events"), 503)
        assert "from this address" in doc["error"]
        for i in range(4):
            streams.append(Stream(b, source="127.0.0.%d" % (i + 2)))
            streams[-1].events(1)
        doc = error_of(*request(b, "GET", "/api/v1/events"), 503)
        assert "too many event streams" in doc["error"]
        assert get(b, "/api/v1/status")["node"] == 1  # the rest of the API still answers
        streams.pop(0).close()

        def room():
            s = Stream(b)
            try:
                return s.head().startswith("HTTP/1.1 200")
            finally:
                s.close()
        wait_until(room, "a closed stream to make room", timeout=10)
    finally:
        for s in streams:
            s.close()


def test_page_needs_no_token_but_data_does(node):
    b = node(admin_token="s3cret-token-0123")
    for path in ("/", "/index.html", "/app.js", "/style.css", "/favicon.svg"):
        status, headers, body = request(b, "GET", path)
        assert status == 200 and body, path
        assert "script-src 'self'" in headers["content-security-policy"]
    error_of(*request(b, "GET", "/api/v1/events"), 401)
    error_of(*request(b, "POST", "/api/v1/retained/delete", body=b'{"topic": "a"}'), 401)
    error_of(*request(b, "POST", "/api/v1/sessions/disconnect", body=b'{"client_id": "a"}'), 401)
    error_of(*request(b, "GET", "/app.js/x"), 401)  # not a file of the page: the API's rules
    s = Stream(b, b"Authorization: Bearer s3cret-token-0123\r\n")
    try:
        assert s.events(1)[0]["node"] == 1
    finally:
        s.close()
