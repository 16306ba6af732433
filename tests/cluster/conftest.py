"""Fixtures for the cluster tests.

`cluster` is three starlingd nodes (node i on 127.0.0.i, free ports probed on
that address, one generated node.conf each) started at once, listening and
agreeing on a leader. `start_cluster(n=3, settings=None, node_settings=None,
wait=True)` starts other layouts (node_settings: {node id: {key: value}}
overrides); `add_node(cluster, node_id, **settings)` makes one more node whose
peer lines are the cluster's plus itself (not started); `start_node(**settings)`
starts a one-node starlingd from -p/--bind/--data-dir flags (no peer lines: a
one-voter cluster) and waits until it reports itself leader.
`start_joiner(node_id, **settings)` starts node node_id on 127.0.0.<node_id>
as a one-node cluster ready to join the test cluster: the same cluster_name and
cluster_secret, a node.conf whose only peer line is itself. In the settings of
each factory, `nofile=(soft, hard)` is no config key but the node's
RLIMIT_NOFILE. Every node has an
admin API (`node.admin_url`, `node.ctl(...)`, `node.status()`) when the
starlingd under test knows admin_listen; the factories then also wait until it
answers. `clients` and `raw` are the paho and raw-socket factories of
tests/integration.

Peer links are TLS by default: `_peer_certs` (session, autouse) makes a CA and
node1..9 certificates once with deploy/make-certs.sh and every node uses
nodeN.crt/.key and ca.crt (STARLING_TEST_PEER_TLS=0: plaintext). The
factories take tls=False for a plaintext node, or tls=DIR for another
certificate directory.

Teardown: SIGCONT to a paused node, SIGTERM to every running one and SIGKILL
after the stop timeout. The test then fails (a teardown error) if a node exited
during the test without the test stopping it, did not exit with code 0 after
SIGTERM, or printed a sanitizer report. Every node's stderr (a file kept under
the test's tmp_path) is attached to a failing test or fixture.
"""

import signal
import subprocess

import pytest

import harness
from harness import Cluster, Node

import rawmqtt


def pytest_collection_modifyitems(config, items):
    if harness.KIND != "starling":
        skip = pytest.mark.skip(reason="the cluster tests run starlingd only (STARLING_TEST_BROKER=%s)"
                                % harness.KIND)
        for item in items:
            item.add_marker(skip)


def pytest_report_header(config):
    return "starlingd under test: %s; long variants %s; peer links %s" % (
        harness.STARLINGD, "on" if harness.LONG else "off (STARLING_LONG=1 turns them on)",
        "TLS" if harness.PEER_TLS else "plaintext (STARLING_TEST_PEER_TLS=0)")


@pytest.fixture(scope="session", autouse=True)
def _peer_certs(tmp_path_factory):
    if harness.KIND != "starling" or not harness.PEER_TLS:
        yield None
        return
    harness.CERTS = harness.make_certs(tmp_path_factory.mktemp("peer-certs"))
    yield harness.CERTS
    harness.CERTS = None


class Nodes:
    """Every node a test made, for the factories and for teardown."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.all = []

    def _node(self, name, node_id, host, settings, peers, tls=None):
        # settings["nofile"] = (soft, hard): the node's RLIMIT_NOFILE, not a config key
        nofile = settings.pop("nofile", None) if settings else None
        n = Node(self.tmp_path / name, node_id, host, settings, peers, tls, nofile=nofile)
        self.all.append(n)
        return n

    def cluster(self, n=3, settings=None, node_settings=None, wait=True, tls=None):
        node_settings = node_settings or {}
        nodes = []
        for i in range(1, n + 1):
            s = dict(settings or {})
            s.update(node_settings.get(i, {}))
            nodes.append(self._node("node%d" % i, i, "127.0.0.%d" % i, s, None, tls))
        peers = [(x.id, x.host, x.cluster_port) for x in nodes]
        for x in nodes:
            x.peers = peers
        c = Cluster(nodes).start()
        if wait:
            c.wait_leader()
            self._wait_admin(nodes)
        return c

    def extra(self, cluster, node_id, settings, tls=None):
        n = self._node("node%d" % node_id, node_id, "127.0.0.%d" % node_id, settings, None, tls)
        n.peers = [(x.id, x.host, x.cluster_port) for x in cluster] + [(n.id, n.host, n.cluster_port)]
        return n

    def single(self, settings, tls=None):
        n = self._node("single%d" % len(self.all), int(settings.pop("node_id", 1)), "127.0.0.1", settings, None,
                       tls)
        n.start()
        n.wait_listening()
        Cluster([n]).wait_leader()
        self._wait_admin([n])
        return n

    def joiner(self, node_id, settings, tls=None):
        n = self._node("node%d" % node_id, node_id, "127.0.0.%d" % node_id, settings, None, tls)
        n.peers = [(n.id, n.host, n.cluster_port)]
        n.start()
        n.wait_listening()
        Cluster([n]).wait_leader()
        self._wait_admin([n])
        return n

    @staticmethod
    def _wait_admin(nodes):
        if harness.admin_supported():
            for n in nodes:
                n.wait_admin()

    def finish(self):
        problems = []
        for n in self.all:
            if n.proc is None:
                continue
            if n.paused:
                n.resume()
            if n.proc.poll() is not None and not n.killed and not n.may_exit:
                problems.append((n, "exited during the test with code %s" % n.proc.returncode))
        running = [n for n in self.all if n.running()]
        for n in running:
            n.signal(signal.SIGTERM)
        for n in running:
            try:
                code = n.proc.wait(timeout=harness.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait()
                problems.append((n, "did not exit within %.0f s of SIGTERM" % harness.STOP_TIMEOUT))
            else:
                if code != 0:
                    problems.append((n, "exited with code %s after SIGTERM" % code))
        for n in self.all:
            marker = n.sanitizer_report()
            if marker:
                problems.append((n, "sanitizer report in stderr (%r)" % marker))
        return problems


@pytest.fixture
def _nodes(request, tmp_path):
    nodes = Nodes(tmp_path)
    request.node._starling_nodes = nodes.all
    yield nodes
    problems = nodes.finish()
    if problems:
        pytest.fail("\n".join("%r: %s\n--- stderr (%s) ---\n%s" % (n, p, n.stderr_path, n.log()[-6000:])
                              for n, p in problems), pytrace=False)


@pytest.fixture
def start_cluster(_nodes):
    return _nodes.cluster


@pytest.fixture
def add_node(_nodes):
    def add(cluster, node_id, tls=None, **settings):
        return _nodes.extra(cluster, node_id, settings, tls)
    return add


@pytest.fixture
def start_node(_nodes):
    def start(tls=None, **settings):
        return _nodes.single(settings, tls)
    return start


@pytest.fixture
def start_joiner(_nodes):
    def start(node_id, tls=None, **settings):
        return _nodes.joiner(node_id, settings, tls)
    return start


@pytest.fixture
def cluster(start_cluster):
    return start_cluster()


def pytest_configure(config):
    harness.integration_conftest.pytest_configure(config)  # the own_auth marker


def pytest_runtest_setup(item):
    harness.authmode.begin_test(item)  # STARLING_TEST_AUTH=1 (tests/integration/authmode.py)


def pytest_runtest_teardown(item, nextitem):
    harness.authmode.end_test()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when in ("setup", "call") and report.failed:
        for n in getattr(item, "_starling_nodes", []):
            report.sections.append(("node %d stderr (%s)" % (n.id, n.stderr_path), n.log()[-8000:]))


# clients(node, client_id=None, version=5, clean=True) or clients.connected(node,
# ..., **connect_kwargs): the fixture of tests/integration (a node has the host
# and port a broker has).
clients = harness.integration_conftest.clients


@pytest.fixture
def raw():
    """raw(node, version=4) -> rawmqtt.RawClient connected by TCP to the node."""
    opened = []

    def make(node, version=4, timeout=5.0):
        c = rawmqtt.RawClient(node.port, version=version, host=node.host, timeout=timeout)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()
