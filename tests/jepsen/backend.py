"""Where the cluster under test runs. A backend owns three nodes and the
faults that can be done to them; nemeses and workloads only use this
interface, so the docker compose cluster (`docker kill`, `docker pause`,
`docker network disconnect`) can plug in as a second backend later.

Interface (node ids are 1..3):
    start() / stop()            bring the cluster up (agreed leader) / down
    endpoint(id) -> (host, port)  where MQTT clients connect
    ids                         the node ids
    leader() -> id or None      the leader the running nodes agree on
    running(id)
    kill(id) / restart(id)      kill -9 and start again
    terminate(id)               SIGTERM (a clean stop; restart(id) after)
    pause(id) / resume(id)      SIGSTOP / SIGCONT (docker pause / unpause)
    cut(pairs) / heal()         drop the cluster traffic between each pair of
                                node ids / restore every link cut
    dump(id) -> Dump             the node's replicated state (harness.Dump)
    logs() -> {id: path}

ProcessBackend: starlingd processes on 127.0.0.1-3 started with the cluster
tests' harness (same node.conf, TLS peer links unless
STARLING_TEST_PEER_TLS=0), partitions by iptables rules on INPUT between
the nodes' cluster ports. Every rule carries the comment
starling-jepsen-<pid>-<run>; heal() and stop() delete exactly the rules
added, and start() first deletes rules left behind by a run whose process no
longer exists. No chain is ever flushed (Docker owns some).
"""

import atexit
import os
import pathlib
import re
import signal
import subprocess
import sys
import weakref

HERE = pathlib.Path(__file__).resolve().parent
CLUSTER = HERE.parent / "cluster"
if str(CLUSTER) not in sys.path:
    sys.path.insert(0, str(CLUSTER))

import harness  # noqa: E402  (tests/cluster)

TAG = "starling-jepsen-"


class Backend:
    ids = ()

    def start(self): raise NotImplementedError
    def stop(self): raise NotImplementedError
    def endpoint(self, node_id): raise NotImplementedError
    def leader(self): raise NotImplementedError
    def running(self, node_id): raise NotImplementedError
    def kill(self, node_id): raise NotImplementedError
    def restart(self, node_id): raise NotImplementedError
    def terminate(self, node_id): raise NotImplementedError
    def pause(self, node_id): raise NotImplementedError
    def resume(self, node_id): raise NotImplementedError
    def cut(self, pairs): raise NotImplementedError
    def heal(self): raise NotImplementedError
    def dump(self, node_id): raise NotImplementedError
    def logs(self): raise NotImplementedError


def _iptables(*args, check=True):
    return subprocess.run(["iptables", "-w"] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30, check=check)


def remove_stale_rules(keep_pid=None):
    """Deletes INPUT rules tagged starling-jepsen-<pid>-... whose pid is not a
    live process (or, with keep_pid None, every tagged rule of a dead run).
    Returns the number deleted."""
    p = _iptables("-S", "INPUT", check=False)
    if p.returncode != 0:
        return 0
    n = 0
    for line in p.stdout.decode().splitlines():
        m = re.search(r'--comment "?%s(\d+)-' % TAG, line)
        if not m or not line.startswith("-A INPUT "):
            continue
        pid = int(m.group(1))
        if pid == keep_pid or os.path.exists("/proc/%d" % pid):
            continue
        spec = line[len("-A INPUT "):]
        # iptables -S quotes the comment; the argv must not carry the quotes.
        args = re.findall(r'"[^"]*"|\S+', spec)
        _iptables("-D", "INPUT", *[a.strip('"') for a in args], check=False)
        n += 1
    return n


# Backends not stopped yet: at exit (an exception, Ctrl-C, SIGTERM) their
# rules are deleted and their nodes killed, so nothing outlives the run.
_LIVE = weakref.WeakSet()


def _stop_leftovers():
    for b in list(_LIVE):
        b.heal()
        for n in b.nodes.values():
            if n.proc is not None and n.proc.poll() is None:
                if n.paused:
                    n.resume()
                n.proc.kill()
                n.proc.wait()


def _sigterm(signum, frame):
    # Once: timeout(1) signals the child and then its whole process group, and
    # a second interrupt would cut the cleanup short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt("SIGTERM")


def exit_cleanly_on_sigterm():
    """SIGTERM (tests/run.sh's timeout) unwinds like Ctrl-C, through the
    finally blocks that heal and stop, instead of killing the interpreter."""
    signal.signal(signal.SIGTERM, _sigterm)


atexit.register(_stop_leftovers)


class ProcessBackend(Backend):
    def __init__(self, workdir, run_id, settings=None):
        self.workdir = pathlib.Path(workdir)
        self.tag = "%s%d-%s" % (TAG, os.getpid(), run_id)
        self.settings = dict(settings or {})
        self.nodes = {}
        self.rules = []
        self.ids = (1, 2, 3)

    def start(self):
        remove_stale_rules(keep_pid=os.getpid())
        _LIVE.add(self)
        if harness.PEER_TLS and harness.CERTS is None:
            harness.CERTS = harness.make_certs(self.workdir / "certs", nodes=3)
        nodes = [harness.Node(self.workdir / ("node%d" % i), i, "127.0.0.%d" % i, dict(self.settings), None)
                 for i in self.ids]
        peers = [(n.id, n.host, n.cluster_port) for n in nodes]
        for n in nodes:
            n.peers = peers
            self.nodes[n.id] = n
        self.cluster = harness.Cluster(nodes).start()
        self.wait_leader()
        return self

    def stop(self):
        """Heals, resumes, SIGTERMs every node; returns problems (a node that
        exited by itself, did not stop cleanly, or printed a sanitizer report)."""
        self.heal()
        _LIVE.discard(self)
        problems = []
        for n in self.nodes.values():
            if n.proc is None:
                continue
            if n.paused:
                n.resume()
            if n.proc.poll() is not None and not n.killed:
                problems.append("node %d exited by itself with code %s" % (n.id, n.proc.returncode))
            elif n.running():
                code = n.terminate()
                if code != 0:
                    problems.append("node %d exited with code %s after SIGTERM" % (n.id, code))
            marker = n.sanitizer_report()
            if marker:
                problems.append("node %d: sanitizer report %r" % (n.id, marker))
        return problems

    def node(self, node_id):
        return self.nodes[node_id]

    def endpoint(self, node_id):
        n = self.nodes[node_id]
        return n.host, n.port

    def running(self, node_id):
        n = self.nodes[node_id]
        return n.running() and not n.paused

    def leader(self):
        """The leader every running node reports, else None."""
        live = [n for n in self.nodes.values() if n.running() and not n.paused]
        views = {(n.leader_view() or (None, 0))[0] for n in live}
        if len(views) == 1 and None not in views and self.running(next(iter(views))):
            return views.pop()
        # Not agreed: the view of the most recent term among running nodes.
        best = max((v for v in (n.leader_view() for n in live) if v), key=lambda v: v[1], default=None)
        return best[0] if best and self.running(best[0]) else None

    def wait_leader(self, timeout=harness.FORM_TIMEOUT):
        """Waits until every running node reports the same leader, itself
        running; returns its id. Only the id is compared: a node logs the
        leader when it learns one, so after a restart of the others it may
        still show an older term of the same leader."""
        def agreed():
            live = [n for n in self.nodes.values() if n.running() and not n.paused]
            views = {(n.leader_view() or (None, 0))[0] for n in live}
            if len(views) == 1:
                leader = views.pop()
                if leader is not None and self.running(leader):
                    return leader
            return None
        return harness.wait_for(agreed, timeout, lambda: "no agreed leader; the nodes report %s" % {
            i: n.leader_view() for i, n in self.nodes.items() if n.running()})

    def kill(self, node_id):
        self.nodes[node_id].kill()

    def restart(self, node_id):
        n = self.nodes[node_id]
        if n.running():
            return
        n.start()
        n.wait_listening()

    def terminate(self, node_id):
        return self.nodes[node_id].terminate()

    def pause(self, node_id):
        self.nodes[node_id].pause()

    def resume(self, node_id):
        n = self.nodes[node_id]
        if n.paused:
            n.resume()

    def _rules(self, a, b):
        jump = ["-m", "comment", "--comment", self.tag, "-j", "DROP"]
        out = []
        for src, dst in ((a, b), (b, a)):
            for opt, port in (("--dport", dst.cluster_port), ("--sport", src.cluster_port)):
                out.append(["-s", src.host, "-d", dst.host, "-p", "tcp", opt, str(port)] + jump)
        return out

    def cut(self, pairs):
        for a, b in pairs:
            for rule in self._rules(self.nodes[a], self.nodes[b]):
                _iptables("-I", "INPUT", *rule)
                self.rules.append(rule)

    def heal(self):
        while self.rules:
            _iptables("-D", "INPUT", *self.rules[-1], check=False)
            self.rules.pop()  # only once deleted: an interrupted heal() is redone at exit

    def dump(self, node_id):
        return self.nodes[node_id].dump()

    def logs(self):
        return {i: n.stderr_path for i, n in self.nodes.items()}
