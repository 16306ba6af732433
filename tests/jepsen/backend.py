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
    set_clock(id, seconds)      the node's wall clock offset (libfaketime;
                                only with clock=True), 0 = the real time
    fill_disk(id) / free_disk(id)  fill the node's data dir's file system /
                                delete the filler (only with disk_mb)

ProcessBackend: starlingd processes on 127.0.0.1-3 started with the cluster
tests' harness (same node.conf, TLS peer links unless
STARLING_TEST_PEER_TLS=0), partitions by iptables rules on INPUT between
the nodes' cluster ports. Every rule carries the comment
starling-jepsen-<pid>-<run>; heal() and stop() delete exactly the rules
added, and start() first deletes rules left behind by a run whose process no
longer exists. No chain is ever flushed (Docker owns some).

Options of ProcessBackend for the clock and disk nemeses:
    clock=True   every node runs under libfaketime (LD_PRELOAD, the
                 multi-threaded variant) reading its wall-clock offset from
                 nodeN/faketime (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE:
                 read at every call, so a jump takes effect at once);
                 CLOCK_MONOTONIC is left alone (FAKETIME_DONT_FAKE_MONOTONIC),
                 as a step of the system clock leaves it alone.
    disk_mb=N    every node's data dir is a tmpfs of N MiB (mounted before the
                 start, unmounted after the stop and at exit); fill_disk()
                 writes nodeN/data/filler until the file system is full.
"""

import atexit
import errno
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

FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
                 "/usr/lib/faketime/libfaketimeMT.so.1")


def faketime_lib():
    """The libfaketime library to preload (Debian's faketime package), or None."""
    for path in FAKETIME_LIBS:
        if os.path.exists(path):
            return path
    return None


class FaultNode(harness.Node):
    """A harness node that may run under libfaketime: its argv is prefixed
    with env(1) setting the preload (same process: env execs starlingd)."""
    faketime = None     # path of the offset file, None: the real clock

    def argv(self):
        argv = super().argv()
        if self.faketime is None:
            return argv
        return ["env", "LD_PRELOAD=%s" % faketime_lib(), "FAKETIME_TIMESTAMP_FILE=%s" % self.faketime,
                "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1",
                # an ASan build wants its runtime first in the preload list
                "ASAN_OPTIONS=%s" % ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                            "verify_asan_link_order=0"]))] + argv


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
    def leader_seen_by(self, node_id): raise NotImplementedError

    def wait_leader(self, timeout=harness.FORM_TIMEOUT):
        """Waits until every running node reports the same leader, itself
        running; returns its id."""
        def agreed():
            views = {self.leader_seen_by(i) for i in self.ids if self.running(i)}
            if len(views) == 1:
                leader = views.pop()
                if leader is not None and self.running(leader):
                    return leader
            return None
        return harness.wait_for(agreed, timeout, lambda: "no agreed leader; the nodes report %s" % {
            i: self.leader_seen_by(i) for i in self.ids if self.running(i)}, interval=0.2)


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
        b.unmount()


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
    def __init__(self, workdir, run_id, settings=None, clock=False, disk_mb=None):
        self.workdir = pathlib.Path(workdir)
        self.tag = "%s%d-%s" % (TAG, os.getpid(), run_id)
        self.settings = dict(settings or {})
        self.nodes = {}
        self.rules = []
        self.ids = (1, 2, 3)
        self.clock = clock
        self.disk_mb = disk_mb
        self.mounts = []

    def start(self):
        remove_stale_rules(keep_pid=os.getpid())
        _LIVE.add(self)
        if harness.PEER_TLS and harness.CERTS is None:
            harness.CERTS = harness.make_certs(self.workdir / "certs", nodes=3)
        nodes = [FaultNode(self.workdir / ("node%d" % i), i, "127.0.0.%d" % i, dict(self.settings), None)
                 for i in self.ids]
        peers = [(n.id, n.host, n.cluster_port) for n in nodes]
        for n in nodes:
            n.peers = peers
            self.nodes[n.id] = n
            if self.clock:
                if faketime_lib() is None:
                    raise RuntimeError("the clock nemesis needs libfaketime (apt-get install faketime)")
                n.faketime = str(n.workdir / "faketime")
                self.set_clock(n.id, 0)
            if self.disk_mb:
                n.data_dir.mkdir(parents=True, exist_ok=True)
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700" % self.disk_mb,
                                "starling-jepsen", str(n.data_dir)], check=True, timeout=30,
                               stdin=subprocess.DEVNULL, capture_output=True)
                self.mounts.append(n.data_dir)
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
        self.unmount()
        return problems

    def unmount(self):
        while self.mounts:
            subprocess.run(["umount", "-l", str(self.mounts[-1])], timeout=30, stdin=subprocess.DEVNULL,
                           capture_output=True)
            self.mounts.pop()

    def set_clock(self, node_id, seconds):
        """The node's wall clock becomes the real time plus seconds (libfaketime
        reads the file at every call). Written to a new file and renamed, so
        a read never sees half of it."""
        n = self.nodes[node_id]
        tmp = n.faketime + ".new"
        with open(tmp, "w") as f:
            f.write("%+d\n" % int(seconds))
        os.replace(tmp, n.faketime)

    def fill_disk(self, node_id):
        """Writes nodeN/data/filler until its file system is full; returns
        the bytes written."""
        if self.nodes[node_id].data_dir not in self.mounts:
            raise RuntimeError("fill_disk: node %d's data dir is not a tmpfs of the suite (disk_mb)" % node_id)
        path = self.nodes[node_id].data_dir / "filler"
        written = 0
        chunk = b"\0" * (1 << 20)
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                try:
                    n = os.write(fd, chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[:len(chunk) // 16 or 1]
                    continue
                written += n
        finally:
            os.close(fd)
        return written

    def wait_exit(self, node_id, timeout):
        """The exit code once the node exited by itself within timeout, else None."""
        n = self.nodes[node_id]
        try:
            code = n.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        n.killed = True     # stopped by the fault: not a crash at the end
        return code

    def last_errors(self, node_id, limit=3):
        """The current run's last log lines at level error."""
        lines = [l for l in self.nodes[node_id].run_log().splitlines() if " error " in l or "error:" in l]
        return lines[-limit:]

    def crash_note(self, node_id):
        """': <the C library's message>' when the run's log ends with one
        (e.g. 'free(): double free detected'), else ''."""
        tail = [l for l in self.nodes[node_id].run_log().splitlines() if l.strip()][-2:]
        odd = [l for l in tail if not l[:4].isdigit()]
        return ": %s" % odd[-1].strip()[:200] if odd else ""

    def free_disk(self, node_id):
        try:
            os.unlink(str(self.nodes[node_id].data_dir / "filler"))
        except FileNotFoundError:
            pass

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

    def leader_seen_by(self, node_id):
        """Only the id is compared: a node logs the leader when it learns
        one, so after a restart of the others it may still show an older
        term of the same leader."""
        return (self.nodes[node_id].leader_view() or (None, 0))[0]

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
