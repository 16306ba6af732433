"""Fixtures that run a real broker on a free 127.0.0.1 port for each test.

`broker` starts one with the defaults; `start_broker(**settings)` starts one
with `--set key=value` for each setting (`nofile=(soft, hard)` starts it
with that RLIMIT_NOFILE instead). The broker is starlingd (path from
$STARLINGD, default <repo>/build/broker/starlingd) or, with
STARLING_TEST_BROKER=mosquitto, /usr/sbin/mosquitto with an equivalent
generated configuration, so the suite itself can be checked against a
reference broker. A setting Mosquitto has no equivalent for skips the test in
that mode.

STARLING_TEST_TRANSPORT=tcp|tls|ws|wss (default tcp) picks the transport of the
broker's listener: with tls it listens with `listener PORT 127.0.0.1 tls` and
the certificates of deploy/make-certs.sh (made once per session, session_certs()),
and rawmqtt, the paho clients (clients.py) and Broker.cli_args() for
mosquitto_pub/sub connect with that transport, so the whole suite runs over
it. ws and wss (wss: TLS certificates as tls) speak MQTT over WebSocket on
path /mqtt (rawmqtt through wsclient.py, paho with transport="websockets");
clients without WebSocket (mosquitto_pub/sub, starling-bench) get a second,
tcp listener on Broker.tcp_port, which Broker.cli_args() names. start_broker(transport="tls", ...) picks it for one broker; the TLS keys
(certfile, cafile, require_certificate, ...) given as settings apply to that
listener (they follow its `--set listener=` line).

Teardown sends SIGTERM and fails the test (as a teardown error) if the broker
died during the test, did not exit cleanly, or printed a sanitizer report.
The broker's stderr is kept in a file and attached to every failing test.
"""

import os
import pathlib
import signal
import socket
import subprocess
import time

import resource
import tempfile

import pytest

import authmode
import rawmqtt

REPO = pathlib.Path(__file__).resolve().parents[2]
STARLINGD = os.environ.get("STARLINGD", str(REPO / "build" / "broker" / "starlingd"))
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
KIND = os.environ.get("STARLING_TEST_BROKER", "starling").strip().lower() or "starling"
START_TIMEOUT = float(os.environ.get("STARLING_TEST_START_TIMEOUT", "20"))
STOP_TIMEOUT = float(os.environ.get("STARLING_TEST_STOP_TIMEOUT", "10"))
VERBOSE = os.environ.get("STARLING_TEST_VERBOSE", "") not in ("", "0")

SANITIZER_MARKERS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "ERROR: UndefinedBehaviorSanitizer", "WARNING: ThreadSanitizer")

if KIND not in ("starling", "mosquitto"):
    raise pytest.UsageError("STARLING_TEST_BROKER must be 'starling' or 'mosquitto', not %r" % KIND)

TRANSPORT = os.environ.get("STARLING_TEST_TRANSPORT", "tcp").strip().lower() or "tcp"
TRANSPORTS = ("tcp", "tls", "ws", "wss")
if TRANSPORT not in TRANSPORTS:
    raise pytest.UsageError("STARLING_TEST_TRANSPORT must be one of %s, not %r" % (", ".join(TRANSPORTS), TRANSPORT))
rawmqtt.TRANSPORT = TRANSPORT

_certs = []


def session_certs():
    """The directory of deploy/make-certs.sh's CA, server and client
    certificates, made once per session (removed at exit)."""
    if not _certs:
        d = pathlib.Path(tempfile.mkdtemp(prefix="starling-certs-"))
        subprocess.run(["bash", str(REPO / "deploy" / "make-certs.sh"), str(d)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _certs.append(d)
        rawmqtt.CAFILE = str(d / "ca.crt")
    return _certs[0]


def pytest_sessionfinish(session, exitstatus):
    import shutil
    for d in _certs:
        shutil.rmtree(d, ignore_errors=True)


def free_port():
    # probed on every address: some tests bind 0.0.0.0, which a port taken on
    # any other address (127.0.0.x of a cluster test, a benchmark) refuses
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _bool(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def mosquitto_config(port, settings):
    """Mosquitto 2.0 configuration equivalent to Starling's settings. Calls
    pytest.skip() for a setting Mosquitto cannot express."""
    lines = ["listener %d 127.0.0.1" % port, "persistence false",
             "log_dest stderr", "log_type error", "log_type warning"]
    if "allow_anonymous" not in settings:
        lines.append("allow_anonymous true")
    if "password_file" in settings and os.geteuid() == 0:
        lines.append("user root")  # else it reads the files as "mosquitto", shut out of the test's tmp_path
    if VERBOSE:
        lines.append("log_type all")
    direct = {
        "max_connections": "max_connections",
        "max_packet_size": "max_packet_size",
        "max_inflight": "max_inflight_messages",
        "max_queued": "max_queued_messages",
        "max_keepalive": "max_keepalive",
        "topic_alias_maximum": "max_topic_alias",
        "retain_available": "retain_available",
        "allow_zero_length_clientid": "allow_zero_length_clientid",
        "max_qos": "max_qos",
        "sys_interval": "sys_interval",
        "password_file": "password_file",
        "acl_file": "acl_file",
        "allow_anonymous": "allow_anonymous",
    }
    for key, value in settings.items():
        if key == "max_keepalive" and 0 < int(value) < 10:
            pytest.skip("Mosquitto refuses max_keepalive below 10 (asked for %s)" % value)
        if key in direct:
            lines.append("%s %s" % (direct[key], _bool(value)))
        elif key == "receive_maximum":
            # Mosquitto announces max_inflight_messages as its Receive Maximum.
            if "max_inflight" in settings and settings["max_inflight"] != value:
                pytest.skip("Mosquitto has one setting for max_inflight and receive_maximum")
            lines.append("max_inflight_messages %s" % value)
        elif key == "queue_policy" and value == "drop_new":
            pass  # Mosquitto always drops new messages when a queue is full
        elif key == "max_subscriptions" and int(value) == 0:
            pass
        else:
            pytest.skip("Starling-specific setting %s=%s has no Mosquitto equivalent" % (key, value))
    return "\n".join(lines) + "\n"


class BrokerFailure(Exception):
    pass


class Broker:
    """One running broker process. host/port to connect to; kind is
    'starling' or 'mosquitto'; log() returns its stderr so far."""

    def __init__(self, kind, workdir, settings, nofile=None, probe=None, transport=None):
        self.kind = kind
        self.transport = transport or TRANSPORT
        if self.transport != "tcp" and kind == "mosquitto":
            pytest.skip("the reference-broker mode runs over tcp only")
        self.cafile = str(session_certs() / "ca.crt") if self.transport in ("tls", "wss") else None
        self.nofile = nofile
        self.probe = probe  # (username, password) of the readiness probe, for a broker refusing anonymous
        self.host = "127.0.0.1"
        self.port = None
        self.tcp_port = None  # ws/wss: the side tcp listener for clients without WebSocket
        self.ws_path = settings.get("ws_path", "/mqtt")
        self.settings = dict(settings)
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.stderr_path = workdir / "stderr.log"
        self.proc = None
        self.argv = None
        self.exited_early = None
        self.admin_url = None  # http://127.0.0.1:PORT of Starling's admin API, None when off
        self.auth = None  # (user, password) of the suite's authentication mode (authmode.py)
        if authmode.applies(self.settings):
            self.settings.update(authmode.broker_settings(workdir / "auth"))
            self.auth = (authmode.USER, authmode.PASSWORD)

    @property
    def is_mosquitto(self):
        return self.kind == "mosquitto"

    def cli_args(self):
        """-h/-p (and --cafile over TLS) for mosquitto_pub/sub; over ws/wss
        the side tcp listener (mosquitto_pub/sub have no WebSocket)."""
        auth = ["-u", self.auth[0], "-P", self.auth[1]] if self.auth else []
        if self.tcp_port:
            return ["-h", self.host, "-p", str(self.tcp_port)] + auth
        args = ["-h", self.host, "-p", str(self.port)]
        if self.cafile:
            args += ["--cafile", self.cafile]
        return args + auth

    def log(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def _argv(self, port):
        if self.kind == "mosquitto":
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(mosquitto_config(port, self.settings))
            argv = [MOSQUITTO, "-c", str(conf)]
            return argv
        argv = [STARLINGD, "--data-dir", str(self.data_dir)]
        if self.transport == "tcp":
            argv += ["--bind", "127.0.0.1", "-p", str(port)]
        else:
            # the listener line first: the TLS keys (--set) apply to the last listener
            certs = session_certs()
            if self.transport in ("ws", "wss"):
                argv += ["--set", "listener=%d 127.0.0.1 tcp" % self.tcp_port]
            argv += ["--set", "listener=%d 127.0.0.1 %s" % (port, self.transport)]
            if self.transport in ("tls", "wss"):
                argv += ["--set", "certfile=%s" % (certs / "server.crt"), "--set", "keyfile=%s" % (certs / "server.key")]
        settings = dict(self.settings)
        # Keep the (one-voter) cluster port on loopback and away from the
        # default 4370, so brokers never collide or listen beyond 127.0.0.1.
        settings.setdefault("cluster_bind", "127.0.0.1:%d" % free_port())
        # The admin API too (its default 127.0.0.1:18083 would be shared).
        settings.setdefault("admin_listen", "127.0.0.1:%d" % free_port())
        self.admin_url = None if settings["admin_listen"] == "off" else "http://" + settings["admin_listen"]
        for key, value in settings.items():
            argv += ["--set", "%s=%s" % (key, _bool(value))]
        if VERBOSE:
            argv.append("-v")
        return argv

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "starling" and not os.access(STARLINGD, os.X_OK):
            pytest.fail("starlingd not found at %s (build it, or set STARLINGD)" % STARLINGD, pytrace=False)
        last = ""
        for _attempt in range(3):
            logged = len(self.log())
            self.port = free_port()
            if self.transport in ("ws", "wss") and self.kind == "starling":
                self.tcp_port = free_port()
            self.argv = self._argv(self.port)
            with open(self.stderr_path, "ab") as err:
                err.write(("$ %s\n" % " ".join(self.argv)).encode())
                err.flush()
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=err,
                                             stderr=err, cwd=str(self.workdir), preexec_fn=self._limits)
            ok, last = self._wait_ready()
            if ok:
                return self
            if self.proc.poll() is None:
                self._kill()
            if "address already in use" not in self.log()[logged:].lower():
                break  # only a port taken meanwhile is worth another attempt
        raise BrokerFailure("broker did not become ready: %s\n--- stderr ---\n%s" % (last, self.log()[-6000:]))

    def _limits(self):
        """In the child, before exec: the descriptor limit asked for."""
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def _wait_ready(self):
        """Polls until an MQTT CONNECT gets CONNACK 0 (a one-node Starling
        must first elect itself), the process exits, or the deadline passes."""
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.005
        last = "no attempt"
        keepalive = 30
        if "max_keepalive" in self.settings and int(self.settings["max_keepalive"]) > 0:
            keepalive = min(keepalive, int(self.settings["max_keepalive"]))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, "exited with code %s during startup" % self.proc.returncode
            try:
                # over TLS with the client certificate, for require_certificate
                # (a listener without it does not ask for one)
                tls = {} if self.transport == "tcp" else {
                    "certfile": session_certs() / "client.crt", "keyfile": session_certs() / "client.key"}
                c = rawmqtt.RawClient(self.port, version=4, timeout=2, transport=self.transport,
                                      ws_path=self.ws_path, **tls)
            except OSError as e:
                last = "connect: %s" % e
            else:
                try:
                    user, password = self.probe or (None, None)
                    c.send(rawmqtt.connect("starling-test-probe", version=4, keepalive=keepalive,
                                           username=user, password=password))
                    ack = c.expect(rawmqtt.CONNACK, timeout=2)
                    if ack.reason == 0:
                        c.send(rawmqtt.disconnect())
                        # Wait for the broker to close: it has then forgotten
                        # the probe and it no longer counts as a connection.
                        try:
                            c.recv_until_closed(timeout=5)
                        except rawmqtt.Timeout:
                            pass
                        return True, "ready"
                    last = "CONNACK reason 0x%02x" % ack.reason
                except (rawmqtt.Closed, rawmqtt.Timeout, OSError, AssertionError) as e:
                    last = "probe: %r" % (e,)
                finally:
                    c.close()
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return False, "not ready after %.0f s (%s)" % (START_TIMEOUT, last)

    def _kill(self):
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait()

    def crashed(self):
        return self.proc is not None and self.proc.poll() is not None

    def stop(self):
        """SIGTERM and wait. Returns a list of problems (empty when clean)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is not None:
            problems.append("broker exited during the test with code %s" % self.proc.returncode)
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
                problems.append("broker did not exit within %.0f s of SIGTERM" % STOP_TIMEOUT)
            else:
                if self.proc.returncode != 0:
                    problems.append("broker exited with code %s after SIGTERM" % self.proc.returncode)
        log = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                problems.append("sanitizer report in stderr (%r)" % marker)
                break
        return problems


def pytest_report_header(config):
    path = MOSQUITTO if KIND == "mosquitto" else STARLINGD
    return "broker under test: %s (%s), transport %s" % (KIND, path, TRANSPORT)


@pytest.fixture
def start_broker(request, tmp_path):
    """Factory: start_broker(**settings) -> Broker (running, ready)."""
    started = []
    request.node._starling_brokers = started

    def start(nofile=None, probe=None, transport=None, **settings):
        workdir = tmp_path / ("broker%d" % len(started))
        workdir.mkdir()
        b = Broker(KIND, workdir, settings, nofile=nofile, probe=probe, transport=transport)
        started.append(b)
        try:
            b.start()
            return b
        except BrokerFailure as e:
            failure = str(e)
        # Reported once, here, not again at teardown.
        started.remove(b)
        pytest.fail(failure, pytrace=False)

    yield start

    problems = []
    for b in started:
        for p in b.stop():
            problems.append((b, p))
    if problems:
        text = []
        for b, p in problems:
            text.append("%s (port %s): %s\n--- stderr (%s) ---\n%s" % (
                b.kind, b.port, p, b.stderr_path, b.log()[-8000:]))
        pytest.fail("\n".join(text), pytrace=False)


@pytest.fixture
def broker(start_broker):
    """A broker with the default settings."""
    return start_broker()


@pytest.fixture(scope="session")
def certs():
    """deploy/make-certs.sh's directory (ca, server, client, node1..3)."""
    return session_certs()


@pytest.fixture
def mosquitto_mode():
    return KIND == "mosquitto"


def pytest_configure(config):
    config.addinivalue_line("markers", authmode.MARKER + ": the test sets up (or tests) authentication "
                            "itself; STARLING_TEST_AUTH=1 leaves its brokers and clients alone")


def pytest_runtest_setup(item):
    authmode.begin_test(item)


def pytest_runtest_teardown(item, nextitem):
    authmode.end_test()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for i, b in enumerate(getattr(item, "_starling_brokers", [])):
            report.sections.append(("broker %d stderr (%s, port %s)" % (i, b.kind, b.port),
                                    b.log()[-8000:]))


@pytest.fixture
def clients():
    """Factory of paho clients: clients(broker, client_id=None, version=5,
    clean=True) or clients.connected(broker, ..., **connect_kwargs)."""
    import clients as clients_mod
    factory = clients_mod.ClientFactory()
    yield factory
    factory.close_all()


@pytest.fixture
def raw():
    """Factory of raw sockets: raw(broker, version=4) -> rawmqtt.RawClient."""
    opened = []

    def make(b, version=4):
        c = rawmqtt.RawClient(b.port, version=version, transport=b.transport, ws_path=getattr(b, "ws_path", "/mqtt"))
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()
