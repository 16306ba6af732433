"""starling-bench against a private Mosquitto: counts, templates, latency figures,
option errors and exit statuses for refused, timed-out, exhausted and lost connections.

Run: /usr/bin/python3 -m pytest tests/integration/test_bench.py
"""

import re
import resource
import signal
import socket
import threading
import time

import paho.mqtt.client as paho
import pytest

from bench_helpers import Bench, FakeBroker, Mosquitto, bench_binary, free_port, run  # noqa: F401 (fixture)

H = ["-h", "127.0.0.1"]


@pytest.fixture
def mosq(tmp_path):
    m = Mosquitto(tmp_path, ["allow_anonymous true"])
    yield m
    m.stop()


def hp(m):
    return H + ["-p", m.port]


class Collector:
    """A paho subscriber that records topics, for checking what starling-bench sent."""

    def __init__(self, port, topic):
        self.topics = []
        self.done = threading.Event()
        self.want = 0
        self.subscribed = threading.Event()
        self.c = paho.Client(client_id=f"collector-{port}", protocol=paho.MQTTv311)
        self.c.on_message = self._msg
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()
        assert self.subscribed.wait(10)

    def _msg(self, client, userdata, msg):
        self.topics.append(msg.topic)
        if self.want and len(self.topics) >= self.want:
            self.done.set()

    def wait(self, n, timeout=10):
        self.want = n
        if len(self.topics) >= n:
            self.done.set()
        assert self.done.wait(timeout), f"got {len(self.topics)} of {n}: {self.topics}"
        return self.topics

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


# --- counts -----------------------------------------------------------------------


def test_conn_connects_every_client(mosq):
    r = run("conn", *hp(mosq), "-c", 50, "-i", 0, "-d", 1, "--json")
    assert r.returncode == 0, r.stderr
    j = r.json()
    assert j["mode"] == "conn"
    assert j["connect"]["connected"] == 50
    assert j["connect"]["failed"] == 0
    assert j["connect"]["time_us"]["count"] == 50
    assert j["errors"] == []
    assert j["exit_status"] == 0


def test_many_connections_from_one_process(mosq):
    b = Bench("conn", *hp(mosq), "-c", 2000, "-i", 0, "-d", 60, "--json", "-V", 4)
    b.wait_ready(timeout=60)
    b.proc.send_signal(signal.SIGINT)  # a signal stops the run with a summary
    b.finish()
    assert b.returncode == 0, b.stderr
    j = b.json()
    assert j["connect"]["connected"] == 2000
    assert j["connect"]["lost"] == 0


@pytest.mark.parametrize("qos,version", [(0, 5), (1, 5), (2, 5), (0, 4), (1, 4), (2, 3)])
def test_every_message_arrives_once(mosq, qos, version):
    # 2 subscribers x (5 publishers x 20 messages): each message twice in total.
    sub = Bench("sub", *hp(mosq), "-c", 2, "-t", "cnt/#", "-q", qos, "-V", version,
                "-L", 200, "-d", 30, "--json")
    sub.wait_ready()
    pub = run("pub", *hp(mosq), "-c", 5, "-i", 0, "-I", 0, "-t", "cnt/%i", "-q", qos,
              "-V", version, "-F", 4, "--limit-per-client", 20, "--json")
    assert pub.returncode == 0, pub.stderr
    p = pub.json()
    assert p["publish"]["sent"] == 100
    assert p["publish"]["acked"] == (100 if qos else 0)
    assert p["publish"]["refused"] == 0
    sub.finish()
    assert sub.returncode == 0, sub.stderr
    s = sub.json()
    assert s["subscribe"]["granted"] == 2
    assert s["receive"]["count"] == 200
    assert s["receive"]["unstamped"] == 0
    assert s["latency_us"]["count"] == 200


@pytest.mark.parametrize("size", [0, 11, 12, 300_000])
def test_payload_sizes(mosq, size):
    # 300 kB packets span several socket reads: the partial-packet path.
    sub = Bench("sub", *hp(mosq), "-c", 2, "-t", "big/#", "-q", 1, "-L", 10, "-d", 30, "--json")
    sub.wait_ready()
    pub = run("pub", *hp(mosq), "-c", 1, "-I", 0, "-t", "big/1", "-q", 1, "-s", size,
              "--limit-per-client", 5, "--json")
    assert pub.returncode == 0, pub.stderr
    assert pub.json()["payload_size"] == size
    sub.finish()
    s = sub.json()
    assert s["receive"]["count"] == 10
    stamped = size >= 12
    assert s["latency_us"]["count"] == (10 if stamped else 0)
    assert s["receive"]["unstamped"] == (0 if stamped else 10)
    if not stamped:
        assert "latency is not measured" in pub.stderr


def test_total_limit_stops_publishing(mosq):
    col = Collector(mosq.port, "lim/#")
    pub = run("pub", *hp(mosq), "-c", 4, "-i", 0, "-I", 1, "-t", "lim/%i", "-q", 1,
              "-L", 37, "--json")
    assert pub.returncode == 0, pub.stderr
    assert pub.json()["publish"]["sent"] == 37
    assert pub.json()["publish"]["acked"] == 37
    assert len(col.wait(37)) == 37
    col.close()


def test_sub_limit_stops_the_subscriber(mosq):
    sub = Bench("sub", *hp(mosq), "-c", 1, "-t", "sl/x", "-L", 10, "-d", 60, "--json")
    sub.wait_ready()
    c = paho.Client(client_id="sl-pub", protocol=paho.MQTTv311)
    c.connect("127.0.0.1", mosq.port)
    c.loop_start()
    for i in range(25):
        c.publish("sl/x", b"not stamped", qos=1).wait_for_publish()
    c.loop_stop()
    c.disconnect()
    sub.finish(timeout=20)
    s = sub.json()
    assert s["receive"]["count"] == 10
    assert s["receive"]["unstamped"] == 10  # foreign payloads carry no send time
    assert s["latency_us"]["count"] == 0


def test_latency_percentiles_are_ordered(mosq):
    sub = Bench("sub", *hp(mosq), "-c", 1, "-t", "lat/+", "-q", 1, "-L", 100, "-d", 30,
                "--json")
    sub.wait_ready()
    pub = run("pub", *hp(mosq), "-c", 2, "-i", 0, "-I", 5, "-t", "lat/%i", "-q", 1,
              "--limit-per-client", 50, "--json")
    assert pub.returncode == 0, pub.stderr
    sub.finish()
    lat = sub.json()["latency_us"]
    assert lat["count"] == 100
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
    assert lat["max"] < 10_000_000  # under 10 s on one machine
    assert lat["min"] <= lat["mean"] <= lat["max"]


def test_text_summary_and_progress(mosq):
    sub = Bench("sub", *hp(mosq), "-c", 1, "-t", "txt/#", "-L", 20, "-d", 30)
    sub.wait_ready()
    run("pub", *hp(mosq), "-c", 1, "-I", 0, "-t", "txt/1", "--limit-per-client", 20)
    sub.finish()
    assert sub.returncode == 0
    out = sub.stdout
    assert "starling-bench sub: 1 clients" in out
    assert re.search(r"received\s+20 messages", out), out
    assert re.search(r"latency\s+p50 [0-9.]+  p90 [0-9.]+  p99 [0-9.]+  p99\.9 [0-9.]+  max", out)
    assert "connection phase done: 1 connected, 0 failed, 1 subscriptions granted" in out


def test_publish_interval_paces_each_client(mosq):
    # -I 200 for 1 s: messages at 0, 200, ..., 1000 ms per client. Loose bounds:
    # the point is pacing per client, not timing precision on a busy machine.
    pub = run("pub", *hp(mosq), "-c", 3, "-i", 0, "-I", 200, "-t", "pace/%i", "-d", 1,
              "--json")
    sent = pub.json()["publish"]["sent"]
    assert 3 * 3 <= sent <= 3 * 7, sent


def test_connect_interval_paces_connections(mosq):
    # -i 100 with 4 clients: the last starts 300 ms after the first.
    r = run("conn", *hp(mosq), "-c", 4, "-i", 100, "-d", 2, "--json")
    j = r.json()
    assert j["connect"]["connected"] == 4
    assert j["connect"]["rate_per_s"] < 4 / 0.3 + 0.5, j["connect"]


# --- templates ----------------------------------------------------------------------


def test_pub_topic_template(mosq):
    col = Collector(mosq.port, "tpl/#")
    pub = run("pub", *hp(mosq), "-c", 3, "-n", 10, "-i", 0, "-t", "tpl/%i/%c/%u", "-u", "alice",
              "--prefix", "pfx", "--limit-per-client", 1, "-q", 1, "--json")
    assert pub.returncode == 0, pub.stderr
    topics = sorted(col.wait(3))
    assert topics == [f"tpl/{i}/pfx_bench_pub_{i}/alice" for i in (11, 12, 13)]
    col.close()


def test_rand_and_message_sequence_templates(mosq):
    col = Collector(mosq.port, "rnd/#")
    run("pub", *hp(mosq), "-c", 1, "-I", 0, "-t", "rnd/%rand_3/%s", "-q", 1, "-L", 60)
    topics = col.wait(60)
    levels = [t.split("/") for t in topics]
    assert {l[1] for l in levels} == {"1", "2", "3"}
    assert sorted(int(l[2]) for l in levels) == list(range(1, 61))
    col.close()


def test_shortids_client_ids(mosq):
    col = Collector(mosq.port, "sid/#")
    run("pub", *hp(mosq), "-c", 2, "-i", 0, "-t", "sid/%c", "--shortids", "--limit-per-client",
        1, "-q", 1)
    assert sorted(col.wait(2)) == ["sid/1", "sid/2"]
    col.close()


def test_sub_topic_template(mosq):
    # Subscribers 6, 7, 8 subscribe to st/6 .. st/8; publishers 5 .. 8 send one
    # message each to st/5 .. st/8, so exactly three arrive.
    sub = Bench("sub", *hp(mosq), "-c", 3, "-n", 5, "-i", 0, "-t", "st/%i", "-q", 1, "-d", 3,
                "--json")
    sub.wait_ready()
    run("pub", *hp(mosq), "-c", 4, "-n", 4, "-i", 0, "-t", "st/%i", "-q", 1,
        "--limit-per-client", 1)
    sub.finish()
    assert sub.json()["receive"]["count"] == 3


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["pub"], "pub needs a topic"),
    (["pub", "-t", "x", "-q", "3"], "out of range (0..2)"),
    (["pub", "-t", "x", "--bogus"], "unknown option '--bogus'"),
    (["conn", "-c", "many"], "'many' is not a number"),
    (["conn", "-S", "--certfile", "c.pem"], "--certfile and --keyfile go together"),
    (["conn", "--ssl-version", "tlsv1"], "not tlsv1.2 or tlsv1.3"),
    (["sub", "-t", "a", "-I", "5"], "does not apply to sub"),
    (["pub", "-t", "a/+"], "not a valid topic name"),
    (["conn", "-h", "no such host"], "not a valid host name"),
    (["conn", "-p"], "needs a value"),
    (["bogus"], "unknown command 'bogus'"),
    ([], "Usage: starling-bench conn|pub|sub"),
])
def test_bad_command_lines_exit_2(args, message):
    r = run(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert r.stdout == ""


def test_help_exits_0():
    r = run("pub", "--help")
    assert r.returncode == 0
    assert "-I, --interval_of_msg" in r.stdout
    assert "Differences from emqtt-bench" in r.stdout


def test_refused_connection():
    port = free_port()  # nothing listens there
    t = time.monotonic()
    r = run("conn", *H, "-p", port, "-c", 3, "-i", 0, "--json")
    assert time.monotonic() - t < 10, "must not wait for a duration when nobody is left"
    assert r.returncode == 1
    j = r.json()
    assert j["connect"]["connected"] == 0
    assert j["connect"]["failed"] == 3
    assert j["errors"] == [{"error": "ECONNREFUSED", "message": "connection refused",
                            "count": 3}]
    assert f"3 of 3 clients could not connect to 127.0.0.1:{port}: connection refused" in r.stderr


def test_retries_are_counted():
    r = run("conn", *H, "-p", free_port(), "-c", 2, "--num-retry-connect", 2, "--json")
    j = r.json()
    assert r.returncode == 1
    assert j["connect"]["started"] == 6
    assert j["connect"]["failed"] == 2
    assert j["errors"][0]["count"] == 6


def test_unreachable_host_times_out():
    # A listener whose backlog is full drops SYNs, as an unreachable host does.
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        port = lst.getsockname()[1]
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        t = time.monotonic()
        r = run("conn", *H, "-p", port, "-c", 2, "--connect-timeout", 1, "--json")
        elapsed = time.monotonic() - t
        for s in fillers:
            s.close()
    assert r.returncode == 1
    assert 0.9 < elapsed < 10
    j = r.json()
    assert j["connect"]["failed"] == 2
    assert j["errors"][0]["error"] == "ETIMEDOUT"
    assert "connection timed out" in r.stderr


def test_connack_refusal(tmp_path):
    m = Mosquitto(tmp_path, ["allow_anonymous false"])
    try:
        r5 = run("conn", *hp(m), "-c", 2, "--json")
        r3 = run("conn", *hp(m), "-c", 1, "-V", 4, "--json")
    finally:
        m.stop()
    assert r5.returncode == 1
    assert r5.json()["errors"] == [{"error": "CONNACK_0x87", "message":
                                    "CONNACK 0x87 not authorized", "count": 2}]
    assert "not authorized" in r5.stderr
    assert r3.returncode == 1
    assert r3.json()["errors"][0]["error"] == "CONNACK_0x05"


def test_out_of_file_descriptors(mosq):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    r = run("conn", *hp(mosq), "-c", 100, "-i", 0, "-d", 1, "--json", preexec_fn=limit)
    assert r.returncode == 1
    j = r.json()
    assert 0 < j["connect"]["connected"] < 100
    assert j["connect"]["connected"] + j["connect"]["failed"] == 100
    assert j["errors"][0]["error"] == "EMFILE"
    assert "stopped opening connections after" in r.stderr
    assert "ulimit -n" in r.stderr


def test_broker_going_away_ends_the_run(tmp_path):
    m = Mosquitto(tmp_path, ["allow_anonymous true"])
    sub = Bench("sub", *hp(m), "-c", 5, "-t", "gone/#", "-d", 60, "--json")
    sub.wait_ready()
    m.stop()
    sub.finish(timeout=20)  # without the broker nobody is left: no waiting for -d
    assert sub.returncode == 1
    j = sub.json()
    assert j["connect"]["lost"] == 5
    assert "5 connections lost" in sub.stderr


CONNACK_V5 = bytes([0x20, 3, 0, 0, 0])  # accepted, no properties


@pytest.mark.parametrize("mode,replies,error,message", [
    # Accepts TCP, never answers CONNECT.
    ("conn", [None], "ETIMEDOUT", "connection timed out"),
    # CONNACK, then no SUBACK.
    ("sub", [CONNACK_V5, None], "ETIMEDOUT", "connection timed out"),
    # A remaining length longer than 4 bytes.
    ("conn", [b"\x20\xff\xff\xff\xff\x01"], "PROTOCOL", "protocol error from the broker"),
    # A CONNACK one byte short.
    ("conn", [b"\x20\x01\x00"], "PROTOCOL", "protocol error from the broker"),
    # CONNACK, then DISCONNECT with reason 0x98 (administrative action).
    ("conn", [CONNACK_V5 + bytes([0xE0, 1, 0x98])], "DISCONNECT",
     "disconnected by the broker"),
])
def test_broker_misbehaviour(mode, replies, error, message):
    fake = FakeBroker(replies)
    try:
        args = ["-t", "x/#"] if mode == "sub" else []
        r = run(mode, *H, "-p", fake.port, "-c", 2, "-i", 0, "--connect-timeout", 1, "-d", 10,
                "--json", *args, timeout=30)
    finally:
        fake.close()
    assert r.returncode == 1, r.stderr
    j = r.json()
    assert [e["error"] for e in j["errors"]] == [error]
    assert j["errors"][0]["message"] == message
    assert j["errors"][0]["count"] == 2
    assert j["duration_s"] < 5, "the run ends once every client has gone"
    assert fake.received, "the client sent its CONNECT"
    assert fake.received[0][0] == 0x10
