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

TODO (later sessions): clock jumps (libfaketime on a restarted node, where the
code reads wall time: session and message expiry, will delay); a full disk (a
small tmpfs as a node's data dir, filled up); the compose backend's docker
kill / pause / network disconnect, through the same backend interface.
"""

import random
import threading
import time


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
        if self.kind == "rolling":
            order = list(b.ids)
            for n in order:
                b.terminate(n)
                b.restart(n)
                time.sleep(1.0)
            return {"fault": "rolling-restart", "nodes": order}
        raise ValueError("unknown nemesis %r" % self.name)

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
                fault = self.begin()
                self.history.add("nemesis", "info", "fault", fault)
                self.stopping.wait(hold)
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
            b.resume(i)
            if not b.running(i):
                b.restart(i)


# TODO: "clock-jump" (restart a node under libfaketime, +/- minutes: session
# and message expiry, will delay), "disk-full" (a node's data dir on a small
# tmpfs, filled until LMDB's writes fail), and the compose backend's
# "docker network disconnect" partitions.
NEMESES = ["none", "kill-random", "kill-leader", "kill-subscriber", "pause-random", "pause-leader",
           "partition-one", "partition-leader", "partition-bridge", "rolling-restart"]
