"""starlingd nodes for the cluster tests: one process per node on 127.0.0.i,
its stderr in a file, its `--dump` output parsed, and waits with deadlines on
log lines, TCP accept and dumps (never fixed sleeps, only short poll intervals).

The binary, timeouts and sanitizer markers are those of tests/integration
(its conftest is loaded as a plain module, so both suites read the same
environment: STARLINGD, STARLING_TEST_START_TIMEOUT, STARLING_TEST_STOP_TIMEOUT,
STARLING_TEST_VERBOSE). The integration helpers clients.py and rawmqtt.py are
importable once this module is.

Peer links run over TLS by default: every node gets cluster_certfile /
cluster_keyfile (nodeN.crt/.key) and cluster_cafile (ca.crt) from a directory
made once per session with deploy/make-certs.sh (conftest.py sets CERTS);
STARLING_TEST_PEER_TLS=0 runs them plaintext, and a node made with tls=False
is plaintext whatever the default.

Each node also gets an HTTP admin API on a free port of its own address
(admin_listen), driven with the built starlingctl (STARLINGCTL, default
tools/starlingctl in STARLINGD's build directory) or read directly as JSON;
the key is only written when the starlingd under test knows it, so the other
tests run on a broker built before the admin API.
"""

import difflib
import functools
import importlib.util
import json
import os
import pathlib
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))


def _integration_conftest():
    spec = importlib.util.spec_from_file_location("integration_conftest", INTEGRATION / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


integration_conftest = _integration_conftest()
# the nodes' MQTT listeners are tcp whatever STARLING_TEST_TRANSPORT says
# (it switches the single-node suite, tests/integration)
import rawmqtt as _rawmqtt  # noqa: E402
import authmode  # noqa: E402
_rawmqtt.TRANSPORT = "tcp"
STARLINGD = integration_conftest.STARLINGD
KIND = integration_conftest.KIND
START_TIMEOUT = integration_conftest.START_TIMEOUT
STOP_TIMEOUT = integration_conftest.STOP_TIMEOUT
VERBOSE = integration_conftest.VERBOSE
SANITIZER_MARKERS = integration_conftest.SANITIZER_MARKERS

LONG = os.environ.get("STARLING_LONG", "") not in ("", "0")
# $BUILD/broker/starlingd -> $BUILD/tools/starlingctl
STARLINGCTL = os.environ.get("STARLINGCTL") or str(pathlib.Path(STARLINGD).parent.parent / "tools" / "starlingctl")

COMMIT_TIMEOUT_MS = 2000
# "Within commit_timeout_ms plus a margin of a few seconds."
ANSWER_BOUND = COMMIT_TIMEOUT_MS / 1000.0 + 4.0
FORM_TIMEOUT = 30.0       # three nodes agree on a leader
CATCH_UP_TIMEOUT = 30.0   # dumps converge
FAIL_FAST_TIMEOUT = 10.0  # a refused data dir makes starlingd exit
SECRET = "s3cret"
CLUSTER_NAME = "test"
POLL = 0.05
ADMIN_TIMEOUT = 30.0      # an admin API answers after a start or restart
CTL_TIMEOUT = 60.0        # one starlingctl run

PEER_TLS = os.environ.get("STARLING_TEST_PEER_TLS", "1") != "0"
CERTS = None              # the session's certificate directory (conftest.py), when PEER_TLS
MAKE_CERTS = HERE.parent.parent / "deploy" / "make-certs.sh"
CERT_NODES = 9            # node1..9 certificates
PLAINTEXT_WARNING = "cluster: peer links are not encrypted (no cluster_certfile): lab use only"


def make_certs(directory, nodes=CERT_NODES):
    """A CA and node1..nodes certificates in directory (deploy/make-certs.sh)."""
    p = subprocess.run(["bash", str(MAKE_CERTS), str(directory)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                       env=dict(os.environ, STARLING_CERT_NODES=str(nodes)))
    assert p.returncode == 0, "make-certs.sh failed: %s" % p.stderr.decode(errors="replace")
    return pathlib.Path(directory)


def tls_keys(certs, node_id):
    """The peer-link TLS keys of node node_id with the certificates in certs."""
    certs = pathlib.Path(certs)
    return {"cluster_certfile": certs / ("node%d.crt" % node_id), "cluster_keyfile": certs / ("node%d.key" % node_id),
            "cluster_cafile": certs / "ca.crt"}


LEADER_RE = re.compile(r"cluster: leader is node (\d+) \(term (\d+)\)")
NO_LEADER = "cluster: no leader"
PEER_REJECTED = "cluster: peer rejected"


def free_port(host):
    """A port nothing listens on at host (bind-probe on the node's own address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(host, n):
    """n distinct free ports at host."""
    ports = []
    while len(ports) < n:
        p = free_port(host)
        if p not in ports:
            ports.append(p)
    return ports


@functools.lru_cache(maxsize=None)
def admin_supported():
    """Whether the starlingd under test accepts the admin_listen key (it
    rejects unknown keys before anything else, --dump included)."""
    with tempfile.TemporaryDirectory() as d:
        try:
            p = subprocess.run([STARLINGD, "--set", "admin_listen=127.0.0.1:1", "--dump", "--data-dir", d],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=30)
        except OSError:
            return False
    return b'unknown key "admin_listen"' not in p.stderr


def run_ctl(*args, timeout=CTL_TIMEOUT):
    """Runs the built starlingctl with args; returns (exit code, stdout, stderr) as text."""
    if not os.access(STARLINGCTL, os.X_OK):
        raise AssertionError("starlingctl not found at %s (build it, or set STARLINGCTL)" % STARLINGCTL)
    p = subprocess.run([STARLINGCTL] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if VERBOSE:
        print("$ starlingctl %s -> %d\n%s%s" % (" ".join(map(str, args)), p.returncode, out, err))
    return p.returncode, out, err


def http_json(url, body=None, timeout=10.0):
    """GET url (POST body as JSON when body is not None); returns (HTTP status,
    decoded JSON or None). Raises OSError when nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy for 127.0.0.x
    try:
        with opener.open(req, timeout=timeout) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, None


class Partition:
    """Drops (or, with reset, answers with a TCP reset) every packet between
    node's cluster port and the others' (both directions, new and established
    connections) with iptables rules on the loopback addresses; heal() removes
    exactly those rules. Tests using it run as root."""

    def __init__(self, node, others, reset=False):
        # The resets themselves pass: on loopback they cross INPUT too, and
        # the rule for the other direction would drop them.
        jump = ["--tcp-flags", "RST", "NONE", "-j", "REJECT", "--reject-with", "tcp-reset"] if reset else [
            "-j", "DROP"]
        self.rules = []
        for o in others:
            for src, dst in ((node, o), (o, node)):
                for port_opt, port in (("--dport", dst.cluster_port), ("--sport", src.cluster_port)):
                    self.rules.append(["-s", src.host, "-d", dst.host, "-p", "tcp", port_opt, str(port)] + jump)
        self.active = []

    def cut(self):
        for rule in self.rules:
            subprocess.run(["iptables", "-w", "-I", "INPUT"] + rule, check=True)
            self.active.append(rule)

    def heal(self):
        while self.active:
            subprocess.run(["iptables", "-w", "-D", "INPUT"] + self.active.pop(), check=True)


def links(a, b):
    """The established TCP connections between the cluster ports of nodes a
    and b (either one dialled), as a set of (local, peer) address pairs."""
    out = subprocess.run(["ss", "-Htn", "state", "established"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, timeout=10).stdout.decode()
    found = set()
    for line in out.splitlines():
        ends = tuple(line.split()[2:4])
        if len(ends) != 2:
            continue
        hosts = [e.rpartition(":")[0] for e in ends]
        for x, y in ((a, b), (b, a)):
            if x.cluster_addr in ends and y.host in hosts and y.host != x.host:
                found.add(ends)
    return found


def closed_by_peer(sock, timeout):
    """Reads until the node closes the connection; False if it is still open after timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        return False
    except OSError:
        pass
    return True


def wait_for(predicate, timeout, what, interval=POLL):
    """Polls predicate() until it returns something truthy, which is returned.
    At the deadline raises AssertionError with what() (or what, if a string)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("after %.0f s: %s" % (timeout, what() if callable(what) else what))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# --dump output


def _quoted(line, i):
    """Decodes the double-quoted string starting at line[i]; returns (bytes, next i)."""
    out = bytearray()
    i += 1
    while i < len(line):
        c = line[i]
        if c == '"':
            return bytes(out), i + 1
        if c == "\\":
            n = line[i + 1:i + 2]
            if n == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", line[i + 2:i + 4]):
                out.append(int(line[i + 2:i + 4], 16))
                i += 4
                continue
            if n in ('"', "\\"):
                out.append(ord(n))
                i += 2
                continue
            raise ValueError("bad escape at column %d" % i)
        if not " " <= c <= "~":
            raise ValueError("unescaped byte %r at column %d" % (c, i))
        out.append(ord(c))
        i += 1
    raise ValueError("unterminated string")


def parse_record(line):
    """'kind "a" "b" k=v k="s" ...' -> (kind, [quoted bytes], {key: str or bytes})."""
    kind, _, rest = line.partition(" ")
    keys, fields = [], {}
    i = 0
    while i < len(rest):
        if rest[i] == '"':
            if fields:
                raise ValueError("quoted key after a field")
            value, i = _quoted(rest, i)
            keys.append(value)
        else:
            m = re.compile(r"([a-z_]+)=").match(rest, i)
            if not m:
                raise ValueError("expected key=value at column %d" % i)
            i = m.end()
            if rest[i:i + 1] == '"':
                value, i = _quoted(rest, i)
            else:
                end = rest.find(" ", i)
                end = len(rest) if end < 0 else end
                value, i = rest[i:end], end
            fields[m.group(1)] = value
        if i < len(rest):
            if rest[i] != " ":
                raise ValueError("expected a space at column %d" % i)
            i += 1
    return kind, keys, fields


class Dump:
    """The parsed output of `starlingd --dump`: applied_index, the state lines
    (all but the first), and sessions / subs / retained keyed by bytes:
    sessions[client_id], subs[(client_id, filter)], retained[topic], each a dict
    of the record's fields."""

    def __init__(self, text, source=""):
        self.text = text
        self.source = source
        lines = text.splitlines()
        if not lines or not re.fullmatch(r"applied_index \d+", lines[0]):
            raise AssertionError("%s: --dump does not start with 'applied_index N':\n%s" % (source, text[:2000]))
        self.applied_index = int(lines[0].split()[1])
        self.state = lines[1:]
        self.order = []
        self.sessions, self.subs, self.retained = {}, {}, {}
        self.users, self.acl = {}, {}  # users[name], acl[(kind, user, topic)]
        # durable sessions: msgs[id], queue[(client_id, id)], inbound[(client_id, pid)]
        self.msgs, self.queue, self.inbound = {}, {}, {}
        tables = {"session": (self.sessions, 1), "sub": (self.subs, 2), "retained": (self.retained, 1),
                  "user": (self.users, 1), "acl": (self.acl, 3),
                  "msg": (self.msgs, 1), "queue": (self.queue, 2), "inbound": (self.inbound, 2)}
        for n, line in enumerate(self.state, 2):
            try:
                kind, keys, fields = parse_record(line)
                table, nkeys = tables[kind]
                if len(keys) != nkeys:
                    raise ValueError("%d quoted keys, expected %d" % (len(keys), nkeys))
            except (ValueError, KeyError) as e:
                raise AssertionError("%s: --dump line %d does not parse (%s): %r" % (source, n, e, line))
            key = tuple(keys) if nkeys > 1 else keys[0]
            table[key] = fields
            self.order.append((kind, key))

    def payload(self, topic):
        """The retained payload of topic (str or bytes) as bytes, or None."""
        rec = self.retained.get(topic.encode() if isinstance(topic, str) else topic)
        return None if rec is None else bytes.fromhex(rec["payload"])

    def diff(self, other):
        return "\n".join(difflib.unified_diff(self.state, other.state, self.source, other.source, lineterm="", n=1))

    def __repr__(self):
        return "<Dump %s applied_index=%d, %d sessions, %d subs, %d retained>" % (
            self.source, self.applied_index, len(self.sessions), len(self.subs), len(self.retained))


def run_dump(data_dir, timeout=30):
    return subprocess.run([STARLINGD, "--dump", "--data-dir", str(data_dir)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def dump(data_dir, source=None):
    p = run_dump(data_dir)
    source = source or str(data_dir)
    assert p.returncode == 0, "starlingd --dump --data-dir %s exited %d: %s" % (
        data_dir, p.returncode, p.stderr.decode(errors="replace")[-2000:])
    return Dump(p.stdout.decode("ascii", errors="replace"), source)


def settled(d):
    """Problems for Cluster.wait_dumps: '' once no session is marked connected,
    i.e. every disconnect the test made has been applied (released, or gone
    with its clean session). Only for when no client is connected."""
    busy = [cid for cid, s in d.sessions.items() if s.get("connected") != "0"]
    return "" if not busy else "sessions still connected: %s" % busy[:10]


def differences(dumps):
    """'' when all dumps have the same state lines, else a diff against the first."""
    first = dumps[0]
    return "\n".join(first.diff(d) for d in dumps[1:] if d.state != first.state)


# ---------------------------------------------------------------------------
# Nodes


class Node:
    """One starlingd. With peers (a list of (id, host, cluster port), itself
    included) it runs from a generated node.conf, the cluster layout of the
    tests; without, from -p/--bind/--data-dir flags, a one-voter cluster.
    settings override or add config keys. host/port are what MQTT clients use.

    The stderr file accumulates over restarts; run_log() is the current run's
    part. Flags for teardown: killed (the test stopped it on purpose) and
    may_exit (it is allowed to exit by itself, e.g. a node that cannot join).
    tls: the certificate directory of its peer links (default CERTS when
    PEER_TLS), or False for plaintext links."""

    def __init__(self, workdir, node_id, host, settings=None, peers=None, tls=None, nofile=None):
        self.id = node_id
        self.nofile = nofile  # (soft, hard) RLIMIT_NOFILE to start with, None: inherited
        self.host = host
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.stderr_path = self.workdir / "stderr.log"
        self.conf_path = self.workdir / "node.conf"
        self.port, self.cluster_port, self.admin_port = free_ports(host, 3)
        self.settings = dict(settings or {})
        self.peers = peers
        self.proc = None
        self.run_start = 0
        self.killed = False
        self.paused = False
        self.may_exit = False
        self.is_mosquitto = False  # for clients.py helpers
        self.auth = None  # (user, password) of the suites' authentication mode (authmode.py)
        if authmode.applies(self.settings):
            self.settings.update(authmode.broker_settings(self.workdir / "auth"))
            self.auth = (authmode.USER, authmode.PASSWORD)
        if tls is None:
            tls = CERTS if PEER_TLS else False
        self.tls = tls or None

    def __repr__(self):
        return "<node %d %s:%d cluster %d>" % (self.id, self.host, self.port, self.cluster_port)

    def cli_args(self):
        """-h/-p for mosquitto_pub/sub, and -u/-P under the suites' authentication mode."""
        return ["-h", self.host, "-p", str(self.port)] + (["-u", self.auth[0], "-P", self.auth[1]] if self.auth else [])

    @property
    def cluster_addr(self):
        return "%s:%d" % (self.host, self.cluster_port)

    @property
    def admin_addr(self):
        return "%s:%d" % (self.host, self.admin_port)

    @property
    def admin_url(self):
        return "http://" + self.admin_addr

    def _tls_keys(self):
        return tls_keys(self.tls, self.id) if self.tls else {}

    def _admin_key(self):
        return {"admin_listen": self.admin_addr} if admin_supported() else {}

    def config(self):
        """The node.conf lines (cluster layout)."""
        keys = {"node_id": self.id, "listener": "%d %s" % (self.port, self.host),
                "data_dir": self.data_dir, "cluster_name": CLUSTER_NAME, "cluster_bind": self.cluster_addr,
                "cluster_secret": SECRET, "commit_timeout_ms": COMMIT_TIMEOUT_MS, "log_level": "info"}
        keys.update(self._admin_key())
        keys.update(self._tls_keys())
        keys.update(self.settings)
        lines = ["%s %s" % (k, v) for k, v in keys.items()]
        lines[6:6] = ["peer %d %s:%d" % p for p in self.peers]
        return "\n".join(lines) + "\n"

    def argv(self):
        if self.peers is not None:
            self.conf_path.write_text(self.config())
            argv = [STARLINGD, "-c", str(self.conf_path)]
        else:
            argv = [STARLINGD, "-p", str(self.port), "--bind", self.host, "--data-dir", str(self.data_dir)]
            keys = {"node_id": self.id, "cluster_bind": self.cluster_addr,
                    "commit_timeout_ms": COMMIT_TIMEOUT_MS, "log_level": "info"}
            keys.update(self._admin_key())
            keys.update(self._tls_keys())
            keys.update(self.settings)
            for k, v in keys.items():
                argv += ["--set", "%s=%s" % (k, v)]
        if VERBOSE:
            argv.append("-v")
        return argv

    # -- process ------------------------------------------------------------

    def start(self):
        """Starts the process (not waiting for anything)."""
        assert not self.running(), "%r is already running" % self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        with open(self.stderr_path, "ab") as err:
            err.write(("$ %s\n" % " ".join(argv)).encode())
            if self.peers is not None:
                err.write(b"".join(b"$   " + l.encode() + b"\n" for l in self.config().splitlines()))
            err.flush()
            self.run_start = err.tell()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         cwd=str(self.workdir), preexec_fn=self._limits)
        self.killed = False
        self.paused = False
        return self

    def _limits(self):
        """In the child, before exec: the descriptor limit asked for."""
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        """SIGKILL (kill -9) and reap."""
        self.killed = True
        if self.running():
            self.proc.kill()
        self.proc.wait()
        self.paused = False

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM; returns the exit code (SIGKILL and None after timeout)."""
        self.killed = True
        if self.paused:
            self.resume()
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def wait_exit(self, timeout):
        """Waits for the process to exit by itself; returns its exit code."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%r still running after %.0f s\n%s" % (self, timeout, self.run_log()[-3000:]))
        self.killed = True
        return code

    # -- logs ---------------------------------------------------------------

    def log(self):
        try:
            return self.stderr_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def run_log(self):
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(self.run_start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def leader_view(self):
        """(leader id, term) this run last reported, or None (none yet, or it
        then printed 'cluster: no leader')."""
        view = None
        for line in self.run_log().splitlines():
            m = LEADER_RE.search(line)
            if m:
                view = (int(m.group(1)), int(m.group(2)))
            elif NO_LEADER in line:
                view = None
        return view

    def leader_reports(self):
        """Every (leader, term) this run printed, in order."""
        return [(int(a), int(b)) for a, b in LEADER_RE.findall(self.run_log())]

    def wait_log(self, text, timeout, what=None):
        """Waits until this run's stderr contains text."""
        return wait_for(lambda: text in self.run_log(), timeout, lambda: "%r never printed %r%s\n%s" % (
            self, text, "" if what is None else " (%s)" % what, self.run_log()[-3000:]))

    def wait_listening(self, timeout=START_TIMEOUT):
        """Waits until the MQTT listener accepts a TCP connection."""
        def accepts():
            if not self.running():
                raise AssertionError("%r exited with code %s while starting\n%s" % (
                    self, self.proc.returncode, self.run_log()[-4000:]))
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return True
            except OSError:
                return False
        return wait_for(accepts, timeout, lambda: "%r does not accept TCP connections\n%s" % (
            self, self.run_log()[-3000:]))

    def sanitizer_report(self):
        log = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                return marker
        return None

    # -- state --------------------------------------------------------------

    def dump(self):
        return dump(self.data_dir, "node %d" % self.id)

    # -- admin API ----------------------------------------------------------

    def ctl(self, *args, timeout=CTL_TIMEOUT):
        """starlingctl --url <this node's admin API> args: (exit code, stdout, stderr)."""
        return run_ctl("--url", self.admin_url, *args, timeout=timeout)

    def api(self, path, body=None, timeout=10.0):
        """(HTTP status, JSON) of path on the admin API (POST when body is given)."""
        return http_json(self.admin_url + path, body, timeout)

    def status(self):
        """GET /api/v1/status as a dict."""
        if not admin_supported():
            raise AssertionError("%s does not accept admin_listen: no admin API to test" % STARLINGD)
        code, body = self.api("/api/v1/status")
        assert code == 200 and isinstance(body, dict), "%r: GET /api/v1/status answered %s %r" % (self, code, body)
        return body

    def wait_admin(self, timeout=ADMIN_TIMEOUT):
        """Waits until the admin API answers GET /api/v1/status."""
        def answers():
            if not self.running():
                raise AssertionError("%r exited with code %s\n%s" % (self, self.proc.returncode,
                                                                     self.run_log()[-3000:]))
            try:
                return self.status() is not None
            except (OSError, AssertionError):
                if not admin_supported():
                    raise
                return False
        return wait_for(answers, timeout, lambda: "%r: admin API %s does not answer\n%s" % (
            self, self.admin_url, self.run_log()[-3000:]))


class Cluster:
    """Nodes that form one cluster (node i on 127.0.0.i); nodes[0] is node 1."""

    def __init__(self, nodes):
        self.nodes = list(nodes)

    def node(self, node_id):
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def __iter__(self):
        return iter(self.nodes)

    def live(self):
        """Nodes running and not paused."""
        return [n for n in self.nodes if n.running() and not n.paused]

    def start(self):
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            n.wait_listening()
        return self

    def wait_leader(self, nodes=None, min_term=0, not_node=None, timeout=FORM_TIMEOUT):
        """Waits until every one of nodes (default: the live ones) reports the
        same leader, itself one of them, with a term above min_term and not
        not_node. Returns (leader Node, term)."""
        nodes = self.live() if nodes is None else list(nodes)
        ids = {n.id for n in nodes}

        def agreed():
            views = {n.leader_view() for n in nodes}
            if len(views) != 1:
                return None
            view = views.pop()
            if view is None or view[0] not in ids or view[1] <= min_term or view[0] == not_node:
                return None
            return view

        def views():
            return "no agreed leader among nodes %s (term > %d%s); they report %s" % (
                sorted(ids), min_term, "" if not_node is None else ", not node %d" % not_node,
                {n.id: n.leader_view() for n in nodes})
        leader, term = wait_for(agreed, timeout, views)
        return self.node(leader), term

    def followers(self, leader):
        return [n for n in self.nodes if n is not leader]

    def wait_caught_up(self, nodes=None, timeout=CATCH_UP_TIMEOUT):
        """Polls --dump of nodes (default: the live ones) until applied_index
        and every state line are equal; returns the dumps."""
        nodes = self.live() if nodes is None else list(nodes)
        last = []

        def equal():
            dumps = [n.dump() for n in nodes]
            last[:] = dumps
            if len({d.applied_index for d in dumps}) == 1 and not differences(dumps):
                return dumps
            return None

        def report():
            return "nodes %s did not catch up: applied_index %s\n%s" % (
                [n.id for n in nodes], [d.applied_index for d in last], differences(last)[-6000:])
        return wait_for(equal, timeout, report, interval=0.1)

    def wait_dumps(self, problems, nodes=None, timeout=CATCH_UP_TIMEOUT):
        """Polls until problems(dump) returns '' for the dump of every node
        (default: the live ones); returns the dumps. problems says what is
        still wrong with one dump."""
        nodes = self.live() if nodes is None else list(nodes)
        last = {}

        def check():
            for n in nodes:
                d = n.dump()
                last[n.id] = (d, problems(d))
            return None if any(p for _, p in last.values()) else [last[n.id][0] for n in nodes]
        return wait_for(check, timeout, lambda: "\n".join("node %d (applied_index %d): %s" % (
            i, d.applied_index, p or "ok") for i, (d, p) in sorted(last.items())), interval=0.1)
