"""The docker compose cluster (deploy/docker/, deploy/cluster-up.sh), driven the
way docs/docker.md tells a user to: cluster-up.sh from nothing, then
mosquitto_sub / mosquitto_pub on the published 127.0.0.1 ports and starlingctl
inside the containers.

- the peer links run TLS (certificates made by cluster-up.sh);
- each published admin port serves the dashboard, its API only with the token;
- a message published through node 3 reaches a subscriber on node 1;
- a retained message published through node 2 is read through node 3;
- `docker kill` of the leader: the two others elect a new one and carry
  traffic between them; the killed node comes back with `docker start`;
- `docker network disconnect` of a follower from the cluster network: its
  clients still reach it over the client network but are fenced (a v5 CONNECT
  gets 0x88 Server unavailable, a 3.1.1 one return code 3) while the two
  others serve; `docker network connect` (with its cluster alias back) heals
  it and it serves the retained message written during the cut.

It runs its own copy of the cluster (STARLING_PREFIX starling-test-PID, free
ports, its own env file), never the user's, and removes it with its volumes.
Needs docker, docker-compose and mosquitto-clients. With the images built it
takes about 30 s (plus about a minute of compiling when the C sources
changed), so it is part of the default suite wherever the image
starling/starling:dev exists; the first build (1.5 to 2 min for the base
image, which needs root for debootstrap, and 1.5 to 5 min for the Starling
image on two shared cores; 3.3 min for the whole test from nothing) happens only with STARLING_LONG=1 or STARLING_TEST_COMPOSE=1, or
after deploy/cluster-up.sh was run once."""

import os
import pathlib
import re
import shutil
import socket
import subprocess
import time

import pytest

from harness import LONG, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
UP = ROOT / "deploy" / "cluster-up.sh"
DOWN = ROOT / "deploy" / "cluster-down.sh"
IMAGE = os.environ.get("STARLING_IMAGE", "starling/starling:dev")


def image_built():
    try:
        return subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


FORCED = LONG or os.environ.get("STARLING_TEST_COMPOSE", "") not in ("", "0")
FENCE_TIMEOUT = 20.0     # the fence comes 2 election timeouts (2 s) after the leader was lost
ELECT_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 15.0

HAVE_DOCKER = bool(shutil.which("docker") and shutil.which("docker-compose"))

pytestmark = [
    pytest.mark.skipif(not HAVE_DOCKER, reason="docker and docker-compose are needed"),
    pytest.mark.skipif(HAVE_DOCKER and not FORCED and not image_built(),
                       reason="%s is not built (deploy/cluster-up.sh builds it; STARLING_LONG=1 or "
                              "STARLING_TEST_COMPOSE=1 let this test build it, 3 to 7 min)" % IMAGE),
    pytest.mark.skipif(not shutil.which("mosquitto_pub"), reason="mosquitto-clients are needed"),
]


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Compose:
    def __init__(self, tmp_path):
        self.prefix = "starling-test-%d" % os.getpid()
        ports = free_ports(6)
        self.mqtt = {n: ports[n - 1] for n in (1, 2, 3)}
        self.env = dict(os.environ, STARLING_PREFIX=self.prefix, COMPOSE_PROJECT_NAME=self.prefix,
                        STARLING_ENV_FILE=str(tmp_path / "compose.env"),
                        STARLING_CERTS_DIR=str(tmp_path / "certs"))
        for n in (1, 2, 3):
            self.env["STARLING_NODE%d_MQTT_PORT" % n] = str(ports[n - 1])
            self.env["STARLING_NODE%d_ADMIN_PORT" % n] = str(ports[n + 2])
        self.admin = {n: ports[n + 2] for n in (1, 2, 3)}
        self.timings = {}

    def container(self, n):
        return "%s-node%d" % (self.prefix, n)

    @property
    def cluster_net(self):
        return self.prefix + "-cluster"

    def run(self, *args, timeout=60, check=True):
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout, check=check)

    def up(self):
        t = time.monotonic()
        r = subprocess.run([str(UP)], env=self.env, capture_output=True, text=True, timeout=1800)
        self.timings["cluster-up.sh"] = time.monotonic() - t
        assert r.returncode == 0, "cluster-up.sh failed:\n%s\n%s" % (r.stdout, r.stderr)
        return r.stdout

    def down(self):
        subprocess.run([str(DOWN), "--volumes"], env=self.env, capture_output=True, timeout=120)

    def leader_seen_by(self, n):
        """The leader node n reports through starlingctl, or None."""
        r = self.run("docker", "exec", self.container(n), "starlingctl", "--timeout", "2", "cluster", "status",
                     check=False, timeout=20)
        m = re.search(r"^leader: *node (\d+)$", r.stdout, re.M)
        return int(m.group(1)) if m else None

    def common_leader(self, nodes):
        seen = {self.leader_seen_by(n) for n in nodes}
        return seen.pop() if len(seen) == 1 and None not in seen else None

    def wait_leader(self, nodes, not_node=None):
        return wait_for(lambda: (lambda l: l if l and l != not_node else None)(self.common_leader(nodes)),
                        ELECT_TIMEOUT, "no common leader among nodes %s" % (nodes,), interval=0.5)

    def pub(self, n, topic, payload, *extra, check=True):
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.mqtt[n]), "-t", topic, "-m", payload,
                            "-q", "1", *extra], capture_output=True, text=True, timeout=30)
        if check:
            assert r.returncode == 0, "mosquitto_pub via node %d: %s" % (n, r.stderr)
        return r

    def sub_once(self, n, topic, timeout):
        """mosquitto_sub -C 1 on node n: the first message's payload, or None."""
        r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.mqtt[n]), "-t", topic, "-q", "1",
                            "-C", "1", "-W", str(int(timeout))], capture_output=True, text=True, timeout=timeout + 10)
        return r.stdout.rstrip("\n") if r.returncode == 0 else None

    def delivered(self, sub_node, pub_node, topic):
        """A subscriber on sub_node gets what is published through pub_node.
        mosquitto_sub says nothing when its subscription is in place, and the
        other node learns it a heartbeat later: publish once a second until
        one copy arrives."""
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.mqtt[sub_node]), "-t", topic,
                                "-q", "1", "-C", "1", "-W", str(int(DELIVERY_TIMEOUT))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + DELIVERY_TIMEOUT
            i = 0
            while sub.poll() is None and time.monotonic() < deadline:
                self.pub(pub_node, topic, "m%d" % i)
                i += 1
                try:
                    sub.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
            out, err = sub.communicate(timeout=DELIVERY_TIMEOUT)
            assert sub.returncode == 0 and re.fullmatch(r"m\d+\n", out), \
                "node %d -> node %d on %s: nothing delivered (%s)" % (pub_node, sub_node, topic, err.strip())
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait()

    def retained_is(self, n, topic, payload, timeout):
        return wait_for(lambda: self.sub_once(n, topic, 3) == payload, timeout,
                        "node %d does not serve retained %r on %s" % (n, payload, topic), interval=0.5)

    def refused(self, n):
        """A v5 and a 3.1.1 CONNECT to node n are both refused by the broker
        (answered, so the client network still reaches it)."""
        v5 = self.pub(n, "fence/probe", "x", "-V", "5", check=False)
        v311 = self.pub(n, "fence/probe", "x", "-V", "311", check=False)
        return ("Server unavailable" in v5.stderr and v5.returncode != 0 and
                "broker unavailable" in v311.stderr and v311.returncode != 0)


@pytest.fixture
def compose(tmp_path):
    c = Compose(tmp_path)
    yield c
    c.down()
    print("\ntimings: " + ", ".join("%s %.1f s" % kv for kv in c.timings.items()))


def timed(compose, what, fn):
    t = time.monotonic()
    value = fn()
    compose.timings[what] = time.monotonic() - t
    return value


def _http_get(port, path):
    """The raw answer (head and body) of GET path on 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path.encode())
        got = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return got
            got += chunk


def test_compose_cluster(compose):
    out = compose.up()
    m = re.search(r"three-node cluster up, leader node (\d)", out)
    assert m, out
    for n in (1, 2, 3):
        assert "127.0.0.1:%d" % compose.mqtt[n] in out, out
        # the peer links run TLS with the certificates cluster-up.sh made
        r = compose.run("docker", "logs", compose.container(n))
        log = r.stdout + r.stderr
        assert "cluster: listening on" in log, log
        assert "peer links are not encrypted" not in log, log

    # the dashboard on each published admin port; the API behind it wants the token
    for n in (1, 2, 3):
        page = _http_get(compose.admin[n], "/")
        assert page.startswith(b"HTTP/1.1 200") and b"<title>Starling" in page, page[:300]
        assert _http_get(compose.admin[n], "/api/v1/status").startswith(b"HTTP/1.1 401")

    # cross-node delivery and a retained message read through another node
    timed(compose, "cross-node delivery", lambda: compose.delivered(1, 3, "compose/cross"))
    compose.pub(2, "compose/ret", "kept", "-r")
    compose.retained_is(3, "compose/ret", "kept", DELIVERY_TIMEOUT)

    # docker kill of the leader: the survivors elect one and serve
    leader = compose.wait_leader([1, 2, 3])
    survivors = [n for n in (1, 2, 3) if n != leader]
    compose.run("docker", "kill", compose.container(leader))
    new = timed(compose, "new leader after docker kill",
                lambda: compose.wait_leader(survivors, not_node=leader))
    assert new in survivors
    compose.delivered(survivors[0], survivors[1], "compose/failover")
    compose.retained_is(survivors[1], "compose/ret", "kept", DELIVERY_TIMEOUT)
    compose.run("docker", "start", compose.container(leader))
    timed(compose, "killed node back", lambda: compose.wait_leader([1, 2, 3]))
    compose.retained_is(leader, "compose/ret", "kept", DELIVERY_TIMEOUT)

    # cut a follower off the cluster network: fenced, the majority serves
    leader = compose.wait_leader([1, 2, 3])
    cut = next(n for n in (1, 2, 3) if n != leader)
    rest = [n for n in (1, 2, 3) if n != cut]
    assert not compose.refused(cut)
    compose.run("docker", "network", "disconnect", compose.cluster_net, compose.container(cut))
    timed(compose, "fence after disconnect",
          lambda: wait_for(lambda: compose.refused(cut), FENCE_TIMEOUT, "node %d still accepts clients" % cut,
                           interval=0.5))
    compose.wait_leader(rest)
    compose.pub(rest[0], "compose/ret", "during-cut", "-r")
    compose.delivered(rest[1], rest[0], "compose/majority")
    assert compose.refused(cut), "node %d accepted a client while cut off" % cut

    # reconnect (with the alias the peers know it by): it heals and catches up
    compose.run("docker", "network", "connect", "--alias", "cluster-node%d" % cut, compose.cluster_net,
                compose.container(cut))
    timed(compose, "heal after reconnect",
          lambda: compose.retained_is(cut, "compose/ret", "during-cut", ELECT_TIMEOUT))
    compose.delivered(cut, rest[0], "compose/healed")
    compose.wait_leader([1, 2, 3])

    # docker stop is answered by starlingd as PID 1 at once, exit status 0
    t = time.monotonic()
    compose.run("docker", "stop", compose.container(cut))
    compose.timings["docker stop"] = time.monotonic() - t
    assert compose.timings["docker stop"] < 8, "docker stop took %.1f s" % compose.timings["docker stop"]
    code = compose.run("docker", "inspect", "-f", "{{.State.ExitCode}}", compose.container(cut)).stdout.strip()
    assert code == "0", "starlingd exited with %s on SIGTERM" % code
