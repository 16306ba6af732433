"""Real command-line clients: mosquitto_pub and mosquitto_sub (3.1, 3.1.1
and 5.0) for publish/subscribe at each QoS, retained messages, v5
properties, persistent sessions, wills, unsubscribe and large payloads."""

import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

from clients import uid

PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
VERSIONS = {3: "mqttv31", 4: "mqttv311", 5: "mqttv5"}


def base(broker, version=4, client_id=None):
    # a cluster node (tests/cluster) has no cli_args: plain tcp
    where = broker.cli_args() if hasattr(broker, "cli_args") else ["-h", broker.host, "-p", str(broker.port)]
    args = where + ["-V", VERSIONS[version]]
    if client_id is not None:
        args += ["-i", client_id]
    return args


def pub(broker, *args, version=4, stdin=None, check=True):
    p = subprocess.run([PUB] + base(broker, version) + list(args), input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    if check:
        assert p.returncode == 0, "mosquitto_pub %s failed (%d): %s" % (args, p.returncode, p.stderr.decode())
    return p


def sub_run(broker, *args, version=4, client_id=None, timeout=20):
    """mosquitto_sub that exits by itself (-C, -E, --retained-only, -W)."""
    p = subprocess.run([SUB] + base(broker, version, client_id) + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p


class LiveSub:
    """A running mosquitto_sub whose output lines arrive in a queue. It is
    also subscribed to a private ready topic; wait_ready() publishes there
    until the first line comes back, proving the subscription is active."""

    def __init__(self, broker, args, version=4, client_id=None, fmt="%t|%p"):
        self.broker = broker
        self.ready_topic = "cli-ready/" + uid("r")
        argv = [SUB] + base(broker, version, client_id) + ["-F", fmt, "-t", self.ready_topic] + list(args)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip(b"\n"))
        self.lines.put(None)

    def wait_ready(self, clients, timeout=10, via=None):
        """via: the broker to publish on (default the subscriber's own)."""
        p = clients.connected(via or self.broker, version=4)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p.publish(self.ready_topic, b"ready", qos=0)
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            assert line is not None, "mosquitto_sub exited: %s" % self.proc.stderr.read().decode()
            if line.startswith(self.ready_topic.encode()):
                return      # later ready echoes are skipped by line()
        raise AssertionError("mosquitto_sub never became ready")

    def line(self, timeout=5):
        """The next output line that is not a ready-topic echo."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.001, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no output from mosquitto_sub within %.1fs" % timeout)
            assert line is not None, "mosquitto_sub exited: %s" % self.proc.stderr.read().decode()
            if not line.startswith(self.ready_topic.encode()):
                return line

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(10)


@pytest.fixture
def live_subs():
    subs = []

    def make(*a, **kw):
        s = LiveSub(*a, **kw)
        subs.append(s)
        return s

    yield make
    for s in subs:
        s.stop(signal.SIGKILL)


@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_cli_pub_sub(broker, clients, live_subs, version, qos):
    s = live_subs(broker, ["-q", str(qos), "-t", "cli/t"], version=version, fmt="%t|%q|%p")
    s.wait_ready(clients)
    pub(broker, "-q", str(qos), "-t", "cli/t", "-m", "hello %d" % qos, version=version)
    assert s.line() == ("cli/t|%d|hello %d" % (qos, qos)).encode()


@pytest.mark.parametrize("version", [4, 5])
def test_cli_retained(broker, version):
    pub(broker, "-r", "-q", "1", "-t", "cli/ret", "-m", "kept", version=version)
    p = sub_run(broker, "-t", "cli/ret", "-C", "1", "-F", "%r|%p", version=version)
    assert p.returncode == 0 and p.stdout == b"1|kept\n"
    # Clear it (-n sends a zero-length payload) and check no retained remains.
    pub(broker, "-r", "-n", "-q", "1", "-t", "cli/ret", version=version)
    pub(broker, "-r", "-q", "1", "-t", "cli/ret2", "-m", "other", version=version)
    p = sub_run(broker, "-t", "cli/ret", "-t", "cli/ret2", "-C", "1", "-F", "%t|%p", version=version)
    assert p.stdout == b"cli/ret2|other\n"


def test_cli_v5_properties(broker, clients, live_subs):
    s = live_subs(broker, ["-q", "1", "-t", "cli/props"], version=5, fmt="%t|%C|%R|%D|%F|%P|%E|%p")
    s.wait_ready(clients)
    pub(broker, "-q", "1", "-t", "cli/props", "-m", "body",
        "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "response-topic", "cli/reply",
        "-D", "publish", "correlation-data", "corr-1",
        "-D", "publish", "payload-format-indicator", "1",
        "-D", "publish", "user-property", "k1", "v1",
        "-D", "publish", "user-property", "k2", "v2",
        "-D", "publish", "message-expiry-interval", "120", version=5)
    line = s.line().decode()
    topic, ctype, rtopic, corr, pfi, uprops, expiry, body = line.split("|")
    assert (topic, ctype, rtopic, corr, pfi, body) == ("cli/props", "text/plain", "cli/reply", "corr-1", "1", "body")
    assert "k1:v1" in uprops and "k2:v2" in uprops
    assert 118 <= int(expiry) <= 120


@pytest.mark.parametrize("version", [4, 5])
def test_cli_persistent_session_queue(broker, version):
    cid = uid("clisess")
    extra = ["-x", "60"] if version == 5 else []
    p = sub_run(broker, "-c", "-q", "1", "-t", "cli/q", "-E", *extra, version=version, client_id=cid)
    assert p.returncode == 0, p.stderr
    for i in range(3):
        pub(broker, "-q", str(1 + i % 2), "-t", "cli/q", "-m", "m%d" % i, version=version)
    p = sub_run(broker, "-c", "-q", "1", "-t", "cli/q", "-C", "3", "-F", "%p", *extra,
                version=version, client_id=cid)
    assert p.returncode == 0 and p.stdout == b"m0\nm1\nm2\n"


def test_cli_will_on_kill(broker, clients, live_subs):
    w = clients.connected(broker, version=4)
    w.subscribe("cli/will", qos=1)
    s = live_subs(broker, ["-t", "cli/nothing", "--will-topic", "cli/will", "--will-payload", "died",
                           "--will-qos", "1"], version=4)
    s.wait_ready(clients)
    s.stop(signal.SIGKILL)     # no DISCONNECT
    assert w.expect_message().payload == b"died"


def test_cli_clean_exit_sends_no_will(broker, clients):
    w = clients.connected(broker, version=4)
    w.subscribe([("cli/will2", 1), ("cli/marker", 1)])
    p = sub_run(broker, "-t", "cli/x", "-E", "--will-topic", "cli/will2", "--will-payload", "no")
    assert p.returncode == 0
    pub(broker, "-q", "1", "-t", "cli/marker", "-m", "m")
    assert w.until_marker("cli/marker") == []


def test_cli_pub_lines_in_order(broker, clients):
    sub = clients.connected(broker, version=4)
    sub.subscribe("cli/lines", qos=1)
    data = b"".join(b"line %03d\n" % i for i in range(50))
    pub(broker, "-q", "1", "-t", "cli/lines", "-l", stdin=data)
    got = sub.expect_messages(50)
    assert [m.payload for m in got] == [b"line %03d" % i for i in range(50)]


def test_cli_large_payload_from_stdin(broker, clients):
    sub = clients.connected(broker, version=5)
    sub.subscribe("cli/big", qos=1)
    data = bytes((i * 7) % 256 for i in range(300_000))
    pub(broker, "-q", "1", "-t", "cli/big", "-s", stdin=data, version=5)
    assert sub.expect_message(timeout=10).payload == data


def test_cli_unsubscribe(broker, clients):
    cid = uid("cliun")
    p = sub_run(broker, "-c", "-q", "1", "-t", "cli/u", "-t", "cli/keep", "-E", client_id=cid)
    assert p.returncode == 0
    p = sub_run(broker, "-c", "-q", "1", "-U", "cli/u", "-t", "cli/keep", "-E", client_id=cid)
    assert p.returncode == 0, p.stderr
    pub(broker, "-q", "1", "-t", "cli/u", "-m", "gone")
    pub(broker, "-q", "1", "-t", "cli/keep", "-m", "kept")
    p = sub_run(broker, "-c", "-q", "1", "-t", "cli/keep", "-C", "1", "-F", "%t|%p", client_id=cid)
    assert p.stdout == b"cli/keep|kept\n"


def test_cli_wildcards_and_dollar(broker, clients, live_subs):
    s = live_subs(broker, ["-t", "#"], version=5)
    s.wait_ready(clients)
    pub(broker, "-t", "$cli/hidden", "-m", "x", "-q", "1")
    pub(broker, "-t", "cli/a/b", "-m", "seen", "-q", "1")
    assert s.line() == b"cli/a/b|seen"


def test_cli_retained_only_and_remove_retained(broker):
    for t in ("cli/rr/1", "cli/rr/2"):
        pub(broker, "-r", "-q", "1", "-t", t, "-m", t)
    p = sub_run(broker, "-t", "cli/rr/#", "--retained-only", "--remove-retained", "-W", "2", "-F", "%t")
    assert sorted(p.stdout.split()) == [b"cli/rr/1", b"cli/rr/2"]
    p = sub_run(broker, "-t", "cli/rr/#", "--retained-only", "-W", "1", "-F", "%t")
    assert p.stdout == b""


def test_cli_v5_session_expiry_and_user_property_on_connect(broker):
    cid = uid("clix")
    p = sub_run(broker, "-c", "-x", "60", "-q", "2", "-t", "cli/x5", "-E",
                "-D", "connect", "user-property", "app", "cli", version=5, client_id=cid)
    assert p.returncode == 0, p.stderr
    pub(broker, "-q", "2", "-t", "cli/x5", "-m", "later", version=5)
    p = sub_run(broker, "-c", "-x", "60", "-q", "2", "-t", "cli/x5", "-C", "1", "-F", "%q|%p",
                version=5, client_id=cid)
    assert p.stdout == b"2|later\n"
