"""The docker compose backend of the fault suite (`run.sh --backend compose`):
the three-node cluster of deploy/docker/ (docker-compose.yml), a copy of its
own per scenario, started with deploy/cluster-up.sh and removed with
deploy/cluster-down.sh --volumes, so every scenario starts from empty volumes.

    kill / restart       docker kill (SIGKILL) / docker start
    terminate            docker stop (SIGTERM to starlingd, PID 1)
    pause / resume       docker pause / docker unpause (the cgroup freezer)
    cut / heal           docker network disconnect of the node from the
                         internal cluster network (its MQTT clients still
                         reach it on the client network) / docker network
                         connect with its alias cluster-nodeN back
    leader               GET /api/v1/status on each node's published admin
                         port (the bearer token of the copy's env file)
    dump                 starlingd --dump inside the container (docker exec;
                         a killed node's volume through a throw-away
                         container of the same image)

Only a whole node can be cut off (a container is on the cluster network or
not), so the partition-bridge nemesis is refused (the scenario reports it).
The copy's names are starling-jepsen-<pid>-<n> (containers, networks,
volumes, compose project) and its ports free ones on 127.0.0.1; at exit a
copy still up is taken down. Needs docker, docker-compose and the image
(deploy/cluster-up.sh builds it; the first time takes a few minutes).
"""

import atexit
import json
import os
import pathlib

import subprocess
import time
import urllib.request

import backend
import harness

ROOT = pathlib.Path(__file__).resolve().parents[2]
UP = ROOT / "deploy" / "cluster-up.sh"
DOWN = ROOT / "deploy" / "cluster-down.sh"
IMAGE = os.environ.get("STARLING_IMAGE", "starling/starling:dev")
DOCKER_TIMEOUT = 60

_UP = []     # copies not taken down yet


def _down_leftovers():
    for c in list(_UP):
        c.down()


atexit.register(_down_leftovers)


class ComposeBackend(backend.Backend):
    _count = 0

    def __init__(self, workdir, run_id):
        ComposeBackend._count += 1
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prefix = "starling-jepsen-%d-%d" % (os.getpid(), ComposeBackend._count)
        self.cluster_net = self.prefix + "-cluster"    # docker-compose.yml's internal network
        self.ids = (1, 2, 3)
        ports = harness.free_ports("127.0.0.1", 6)
        self.mqtt = {n: ports[n - 1] for n in self.ids}
        self.admin = {n: ports[n + 2] for n in self.ids}
        self.env_file = self.workdir / "compose.env"
        self.env = dict(os.environ, STARLING_PREFIX=self.prefix, COMPOSE_PROJECT_NAME=self.prefix,
                        STARLING_ENV_FILE=str(self.env_file), STARLING_CERTS_DIR=str(self.workdir / "certs"),
                        STARLING_IMAGE=IMAGE)
        for n in self.ids:
            self.env["STARLING_NODE%d_MQTT_PORT" % n] = str(self.mqtt[n])
            self.env["STARLING_NODE%d_ADMIN_PORT" % n] = str(self.admin[n])
        self.paused = set()
        self.cut_off = set()
        self.stopped = set()       # killed or stopped by a fault, not yet started again
        self.token = None
        self.timings = {}

    # -- docker ---------------------------------------------------------

    def container(self, n):
        return "%s-node%d" % (self.prefix, n)

    def docker(self, *args, check=True, timeout=DOCKER_TIMEOUT):
        p = subprocess.run(["docker"] + list(args), env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("docker %s: %s" % (" ".join(args), p.stderr.strip()[-500:]))
        return p

    def state(self, n):
        p = self.docker("inspect", "-f", "{{json .State}}", self.container(n), check=False)
        return json.loads(p.stdout) if p.returncode == 0 else {}

    # -- lifecycle ------------------------------------------------------

    def start(self):
        t = time.monotonic()
        _UP.append(self)
        p = subprocess.run([str(UP)], env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=1800)
        (self.workdir / "cluster-up.log").write_text(p.stdout + p.stderr)
        if p.returncode != 0:
            raise RuntimeError("cluster-up.sh failed: %s" % (p.stdout + p.stderr)[-1500:])
        self.timings["up_s"] = round(time.monotonic() - t, 1)
        for line in self.env_file.read_text().splitlines():
            if line.startswith("STARLING_ADMIN_TOKEN="):
                self.token = line.split("=", 1)[1]
        self.wait_leader()
        return self

    def down(self):
        if self in _UP:
            _UP.remove(self)
        subprocess.run([str(DOWN), "--volumes"], env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=180)

    def stop(self):
        """Heals, saves each node's log, checks that no node exited by itself
        (or with a non-zero code after SIGTERM), takes the copy down."""
        problems = []
        try:
            self.heal()
            for n in self.ids:
                self.resume(n)
            for n in self.ids:
                st = self.state(n)
                if not st.get("Running") and n not in self.stopped:
                    problems.append("node %d exited by itself with code %s" % (n, st.get("ExitCode")))
            for n in self.ids:
                if self.state(n).get("Running"):
                    self.docker("stop", "-t", "20", self.container(n), check=False, timeout=60)
                    code = self.state(n).get("ExitCode")
                    if code != 0:
                        problems.append("node %d exited with code %s after SIGTERM" % (n, code))
            for n, path in self.logs().items():
                p = self.docker("logs", self.container(n), check=False)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(p.stdout + p.stderr)
        finally:
            self.down()
        return problems

    # -- the interface --------------------------------------------------

    def endpoint(self, n):
        return "127.0.0.1", self.mqtt[n]

    def status(self, n, timeout=2.0):
        req = urllib.request.Request("http://127.0.0.1:%d/api/v1/status" % self.admin[n],
                                     headers={"Authorization": "Bearer %s" % self.token})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def running(self, n):
        return n not in self.stopped and n not in self.paused

    def leader(self):
        """The leader every running node reports, else the one most of them do."""
        views = [self.leader_seen_by(n) for n in self.ids if self.running(n)]
        votes = [v for v in views if v is not None and self.running(v)]
        if not votes:
            return None
        best = max(set(votes), key=votes.count)
        return best if votes.count(best) * 2 > len(views) or len(set(votes)) == 1 else None

    def leader_seen_by(self, n):
        return (self.status(n) or {}).get("leader")

    def wait_leader(self, timeout=harness.FORM_TIMEOUT * 2):
        return super().wait_leader(timeout)

    def kill(self, n):
        self.docker("kill", self.container(n))
        self.stopped.add(n)
        self.paused.discard(n)

    def restart(self, n):
        if n not in self.stopped and self.state(n).get("Running"):
            return
        self.docker("start", self.container(n))
        self.stopped.discard(n)
        harness.wait_for(lambda: self.status(n) is not None, harness.START_TIMEOUT * 2,
                         "node %d's admin API does not answer after docker start" % n, interval=0.2)

    def terminate(self, n):
        self.resume(n)
        self.docker("stop", "-t", "20", self.container(n), timeout=60)
        self.stopped.add(n)
        return self.state(n).get("ExitCode")

    def pause(self, n):
        self.docker("pause", self.container(n))
        self.paused.add(n)

    def resume(self, n):
        if n in self.paused:
            self.docker("unpause", self.container(n))
            self.paused.discard(n)

    def cut(self, pairs):
        """Only whole nodes: each node that loses every other node is
        disconnected from the cluster network."""
        lost = {}
        for a, b in pairs:
            lost.setdefault(a, set()).add(b)
            lost.setdefault(b, set()).add(a)
        isolated = [n for n, others in lost.items() if others == set(self.ids) - {n}]
        covered = {frozenset((n, o)) for n in isolated for o in self.ids if o != n}
        if not isolated or any(frozenset(p) not in covered for p in pairs):
            raise NotImplementedError("the compose backend cuts whole nodes off (docker network disconnect), "
                                      "not single links %s" % (pairs,))
        for n in isolated:
            self.docker("network", "disconnect", self.cluster_net, self.container(n))
            self.cut_off.add(n)

    def heal(self):
        for n in sorted(self.cut_off):
            self.docker("network", "connect", "--alias", "cluster-node%d" % n, self.cluster_net, self.container(n),
                        check=False)
            self.cut_off.discard(n)

    def dump(self, n):
        """starlingd --dump of the node's data dir (read-only), in the container."""
        if self.running(n):
            p = self.docker("exec", self.container(n), "starlingd", "--dump", "--data-dir", "/var/lib/starling",
                            check=False)
        else:
            p = self.docker("run", "--rm", "--volumes-from", self.container(n), "--entrypoint", "starlingd", IMAGE,
                            "--dump", "--data-dir", "/var/lib/starling", check=False)
        assert p.returncode == 0, "starlingd --dump in %s exited %d: %s" % (
            self.container(n), p.returncode, p.stderr[-2000:])
        return harness.Dump(p.stdout, self.container(n))

    def logs(self):
        return {n: self.workdir / ("node%d" % n) / "stderr.log" for n in self.ids}

    # -- figures --------------------------------------------------------

    def fence_time(self, n, cut_at, timeout=30.0):
        """Seconds from cut_at until node n refuses a CONNECT (0x88); None if
        not within timeout. For the fence measurement (docs/jepsen.md)."""
        import rawmqtt as r
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                c = r.RawClient(self.mqtt[n], version=5, host="127.0.0.1", timeout=2)
                c.send(r.connect("fence-probe", version=5))
                ack = c.expect(r.CONNACK, 2)
                c.close()
                if ack.reason == 0x88:
                    return time.monotonic() - cut_at
            except (OSError, r.Closed, r.Timeout, AssertionError):
                pass
            time.sleep(0.1)
        return None


def available():
    """Why the compose backend cannot run here, or None."""
    import shutil
    if not (shutil.which("docker") and shutil.which("docker-compose")):
        return "docker and docker-compose are needed"
    return None



