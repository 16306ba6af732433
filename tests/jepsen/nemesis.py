"""Nemeses: faults injected on a schedule while the workload runs. Each
records "start" and "stop" ops (process "nemesis") in the history with the
fault in value, so the checkers and the pictures know when it was on.

Available (name: what start / stop do):
    none                 nothing (the control)
    kill-random          kill -9 of a random node / restart it
    kill-leader          kill -9 of the leader / restart it
    kill-subscriber      kill -9 of the node serving the workload's
                         subscribers (queue: the durable subscribers;
                         ownership: the current owner) / restart it
    pause-random         SIGSTOP / SIGCONT of a random node
    pause-leader         SIGSTOP / SIGCONT of the leader
    partition-one        one random node cut off from both others / heal
    partition-leader     the leader cut off from both others / heal
    partition-bridge     the leader and one follower cannot talk, the third
                         node sees both halves / heal
    rolling-restart      SIGTERM and restart of every node in turn (stop: none)
    clock-jump           the wall clock of the subscribers' node (else a
                         random one) jumps 2 h back, the next time 2 h
                         forward, and so on (libfaketime) / the real time
    clock-kill           the subscribers' node's clock 2 h back, then after
                         1.5 s that node killed -9 (with its clock still
                         wrong) / restarted on the real time: what it wrote
                         with the wrong time is applied by the others
    disk-full            the file system of a random node's data dir (a
                         tmpfs) filled up; the node must stop with one
                         "disk full" line / the filler deleted, the node
                         started again

The clock and disk nemeses need backend support (ProcessBackend(clock=True),
ProcessBackend(disk_mb=N)); scenarios.backend_options() says which.
"""

import threading
import time

CLOCK_JUMP_S = 7200      # longer than the workloads' expiry intervals (1 h)
DISK_MB = 128            # the tmpfs of each data dir under disk-full
BALLAST_KB = 512         # retained messages pushed through the others until the full node stops


class Nemesis:
    def __init__(self, name, backend, history, rng, target_hint=None):
        self.name = name
        self.backend = backend
        self.history = history
        self.rng = rng
        self.target_hint = target_hint or (lambda: None)
        kind, _, target = name.partition("-")
        self.kind, self.target = kind, target
        self.active = None
        self.thread = None
        self.stopping = threading.Event()
        self.errors = []
        self.problems = []   # what a fault showed that is wrong (a node that did not stop cleanly)
        self.jumps = 0

    # -- choosing nodes -------------------------------------------------

    def _pick(self, target):
        ids = [i for i in self.backend.ids if self.backend.running(i)]
        if target == "leader":
            leader = self.backend.leader()
            if leader is not None:
                return leader
        elif target == "subscriber":
            hint = self.target_hint()
            if hint is not None and self.backend.running(hint):
                return hint
        return self.rng.choice(ids)

    # -- one fault ------------------------------------------------------

    def begin(self):
        b = self.backend
        if self.kind == "none":
            return None
        if self.kind == "kill":
            n = self._pick(self.target)
            b.kill(n)
            return {"fault": "kill", "node": n}
        if self.kind == "pause":
            n = self._pick(self.target)
            b.pause(n)
            return {"fault": "pause", "node": n}
        if self.kind == "partition":
            if self.target == "bridge":
                a = self._pick("leader")
                c = self.rng.choice([i for i in b.ids if i != a])
                b.cut([(a, c)])
                return {"fault": "partition", "cut": [[a, c]], "bridge": [i for i in b.ids if i not in (a, c)][0]}
            n = self._pick("leader" if self.target == "leader" else "random")
            others = [i for i in b.ids if i != n]
            b.cut([(n, o) for o in others])
            return {"fault": "partition", "isolated": n}
        if self.kind == "clock":
            n = self._pick("subscriber")
            offset = -CLOCK_JUMP_S if self.target == "kill" or self.jumps % 2 == 0 else CLOCK_JUMP_S
            self.jumps += 1
            b.set_clock(n, offset)
            if self.target == "kill":
                self.stopping.wait(1.5)
                b.kill(n)
                return {"fault": "clock-kill", "node": n, "offset_s": offset}
            return {"fault": "clock", "node": n, "offset_s": offset}
        if self.kind == "disk":
            n = self._pick("random")
            t0 = time.monotonic()
            filled = b.fill_disk(n)
            out = {"fault": "disk-full", "node": n, "filled_mb": round(filled / 2**20, 1)}
            # The workloads' entries are small: the Raft log's open segment
            # (8 MiB, allocated ahead) and the store's free pages would take
            # them for minutes. Ballast through another node makes the log
            # need its next segment.
            exited, pushed = None, 0
            other = [i for i in b.ids if i != n and b.running(i)]
            while exited is None and time.monotonic() - t0 < 10.0 and not self.stopping.is_set():
                pushed += self.ballast(self.rng.choice(other))
                exited = b.wait_exit(n, 0.05)
            out["ballast_mb"] = round(pushed / 2**20, 1)
            out["exit"] = exited
            if exited is None:
                self.problems.append("disk-full: node %d still running %.0f s after its disk filled up" % (
                    n, time.monotonic() - t0))
            else:
                out["after_s"] = round(time.monotonic() - t0, 2)
                out["lines"] = b.last_errors(n)
                full = [l for l in out["lines"] if "disk full" in l]
                if exited != 1 or len(full) != 1:
                    self.problems.append("disk-full: node %d exited with %s (expected 1) after %d 'disk full' "
                                         "line(s)%s" % (n, "signal %d" % -exited if exited < 0 else "code %d" % exited,
                                                       len(full), b.crash_note(n)))
            return out
        if self.kind == "rolling":
            order = list(b.ids)
            for n in order:
                b.terminate(n)
                b.restart(n)
                time.sleep(1.0)
            return {"fault": "rolling-restart", "nodes": order}
        raise ValueError("unknown nemesis %r" % self.name)

    def ballast(self, node):
        """One retained QoS 1 message of BALLAST_KB through node; its bytes
        (0 when it was not acknowledged)."""
        import rawmqtt as r
        payload = b"b" * (BALLAST_KB * 1024)
        try:
            host, port = self.backend.endpoint(node)
            c = r.RawClient(port, version=5, host=host, timeout=5)
            try:
                c.send(r.connect("jepsen-ballast", version=5))
                if c.expect(r.CONNACK, 5).reason != 0:
                    return 0
                c.send(r.publish("jepsen/ballast", payload, qos=1, retain=True, pid=1, version=5))
                return len(payload) if c.expect(r.PUBACK, 5).reason < 0x80 else 0
            finally:
                c.close()
        except (OSError, r.Closed, r.Timeout, AssertionError):
            return 0

    def end(self, fault):
        b = self.backend
        if fault is None:
            return
        if fault["fault"] == "kill":
            b.restart(fault["node"])
        elif fault["fault"] == "pause":
            b.resume(fault["node"])
        elif fault["fault"] == "partition":
            b.heal()
        elif fault["fault"] == "clock":
            b.set_clock(fault["node"], 0)
        elif fault["fault"] == "clock-kill":
            b.set_clock(fault["node"], 0)
            b.restart(fault["node"])
        elif fault["fault"] == "disk-full":
            b.free_disk(fault["node"])
            if not b.running(fault["node"]):
                b.restart(fault["node"])

    # -- the schedule ---------------------------------------------------

    def run(self, duration, warmup=3.0, hold=4.0, calm=4.0):
        """Until duration seconds after the start: calm warmup, then fault for
        hold seconds, calm for calm seconds, again."""
        end = time.monotonic() + duration
        if self.stopping.wait(warmup):
            return
        while time.monotonic() + hold < end and not self.stopping.is_set():
            try:
                tag = {"nemesis": self.name}
                self.history.add("nemesis", "info", "start", tag)
                self.active = tag
                t0 = time.monotonic()
                fault = self.begin()
                self.history.add("nemesis", "info", "fault", fault)
                # the clock and disk faults' own waits count in their hold
                spent = time.monotonic() - t0 if self.kind in ("clock", "disk") else 0.0
                self.stopping.wait(max(0.0, hold - spent))
                self.end(fault)
                self.active = None
                self.history.add("nemesis", "info", "stop", tag)
            except Exception as e:  # a fault that cannot be done ends the schedule, not the run
                self.errors.append(repr(e))
                self.history.add("nemesis", "info", "error", repr(e))
                self.heal_all()
                return
            self.stopping.wait(calm)

    def start(self, duration, **kw):
        self.thread = threading.Thread(target=self.run, args=(duration,), kwargs=kw, daemon=True,
                                       name="nemesis")
        self.thread.start()

    def finish(self):
        """Stops the schedule and undoes whatever fault is on: every node
        running, resumed, every link healed."""
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=60)
        self.heal_all()

    def heal_all(self):
        b = self.backend
        if self.active is not None:
            self.history.add("nemesis", "info", "stop", self.active)
            self.active = None
        b.heal()
        for i in b.ids:
            if self.kind == "clock":
                b.set_clock(i, 0)
            if self.kind == "disk":
                b.free_disk(i)
            b.resume(i)
            if not b.running(i):
                b.restart(i)


NEMESES = ["none", "kill-random", "kill-leader", "kill-subscriber", "pause-random", "pause-leader",
           "partition-one", "partition-leader", "partition-bridge", "rolling-restart",
           "clock-jump", "clock-kill", "disk-full"]
