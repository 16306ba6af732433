"""The recorded history of a run: one JSON object a line, in the order the
operations completed or were invoked, as Jepsen records them.

    {"process": 3, "type": "invoke", "f": "write", "value": "w3-17", "key": "r0", "time": 4.213}
    {"process": 3, "type": "ok",     "f": "write", "value": "w3-17", "key": "r0", "time": 4.250}

type is invoke, ok (it happened), fail (it certainly did not happen) or info
(unknown: a timeout or a dropped connection after the request was sent).
time is seconds since the start of the run (monotonic clock). Other keys are
workload specific (key, node, qos, conn...). The nemesis records its faults
as process "nemesis" with f "start"/"stop" and the fault in value; the
workloads' final observations (deliveries, dumps) are ops too, so the
checkers decide from this file alone.
"""

import json
import threading
import time


class History:
    def __init__(self, path=None):
        self.ops = []
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.file = open(path, "w") if path else None

    def now(self):
        return time.monotonic() - self.t0

    def add(self, process, type_, f, value=None, **extra):
        op = {"process": process, "type": type_, "f": f, "value": value}
        op.update(extra)
        with self.lock:
            op["time"] = round(self.now(), 6)
            op["index"] = len(self.ops)
            self.ops.append(op)
            if self.file:
                self.file.write(json.dumps(op, sort_keys=True) + "\n")
                self.file.flush()
        return op

    def invoke(self, process, f, value=None, **extra):
        return self.add(process, "invoke", f, value, **extra)

    def complete(self, invoked, type_, value=None, **extra):
        """The ok/fail/info completion of an invoke op (same process, f and extra keys)."""
        fields = {k: v for k, v in invoked.items() if k not in ("process", "type", "f", "value", "time", "index")}
        fields.update(extra)
        return self.add(invoked["process"], type_, invoked["f"], invoked["value"] if value is None else value,
                        **fields)

    def close(self):
        if self.file:
            self.file.close()
            self.file = None


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pairs(ops):
    """(invoke, completion or None) for every client operation, in invoke
    order. A process has at most one operation outstanding; an invoke never
    completed (the run ended) pairs with None, which counts as info."""
    open_ = {}
    out = []
    for op in ops:
        if op["process"] == "nemesis":
            continue
        if op["type"] == "invoke":
            out.append([op, None])
            open_[op["process"]] = out[-1]
        elif op["process"] in open_ and open_[op["process"]][1] is None and open_[op["process"]][0]["f"] == op["f"]:
            open_.pop(op["process"])[1] = op
    return [tuple(p) for p in out]


def fault_intervals(ops):
    """[(start time, end time or None, fault value)] of the nemesis."""
    out, started = [], {}
    for op in ops:
        if op["process"] != "nemesis":
            continue
        key = json.dumps(op.get("value"), sort_keys=True)
        if op["f"] == "start":
            started[key] = op
        elif op["f"] == "stop" and key in started:
            s = started.pop(key)
            out.append((s["time"], op["time"], s.get("value")))
    end = max((op["time"] for op in ops), default=0)
    for s in started.values():
        out.append((s["time"], end, s.get("value")))
    return sorted(out, key=lambda x: x[0])
