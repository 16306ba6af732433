"""Scenarios (a workload and a nemesis) and running one end to end:
start the backend, run the workload for the duration while the nemesis
injects faults, heal, let the workload finish (final reads, drains), record
every node's replicated state, stop the nodes, check the history, write
the outputs."""

import hashlib
import json
import pathlib
import random
import time
import traceback

import checkers
import history as hist
import report
import nemesis as nem
from backend import ProcessBackend
from nemesis import NEMESES, Nemesis
from workloads import WORKLOADS

DURATION = 20.0

# The short run (the default suite): one scenario per workload, each with a
# fault that hits what the workload depends on.
SHORT = ["register-kill-leader", "queue-partition-leader", "ownership-kill-subscriber"]
ALL = ["%s-%s" % (w, n) for w in WORKLOADS for n in NEMESES]
# The compose backend: docker kill / pause / network disconnect of whole
# nodes (no single links, no faked clock, no small disk).
COMPOSE_NEMESES = ["none", "kill-random", "kill-leader", "kill-subscriber", "pause-random", "pause-leader",
                   "partition-one", "partition-leader", "rolling-restart"]
SHORT_COMPOSE = ["register-kill-leader", "register-pause-leader", "register-partition-one"]
ALL_COMPOSE = ["%s-%s" % (w, n) for w in WORKLOADS for n in COMPOSE_NEMESES]


def parse(name):
    for w in WORKLOADS:
        if name.startswith(w + "-") and name[len(w) + 1:] in NEMESES:
            return w, name[len(w) + 1:]
    raise ValueError("unknown scenario %r (workload-nemesis; workloads %s, nemeses %s)" % (
        name, list(WORKLOADS), NEMESES))


def backend_options(nemesis_name):
    """What the nemesis needs of a ProcessBackend (a faked clock, small disks)."""
    if nemesis_name.startswith("clock-"):
        return {"clock": True}
    if nemesis_name == "disk-full":
        return {"disk_mb": nem.DISK_MB}
    return {}


def make_backend(kind, out, seed, nemesis_name):
    if kind == "compose":
        import compose
        return compose.ComposeBackend(out, "%d" % seed)
    return ProcessBackend(out, "%d" % seed, **backend_options(nemesis_name))


def record_dumps(b, h, timeout=30.0):
    """Waits (up to timeout) until every node's --dump is identical, then
    records each node's as a "dump" op: node, applied_index, digest."""
    deadline = time.monotonic() + timeout
    while True:
        dumps = {}
        for i in b.ids:
            try:
                dumps[i] = b.dump(i)
            except AssertionError as e:
                dumps[i] = e
        good = [d for d in dumps.values() if not isinstance(d, Exception)]
        same = len(good) == len(dumps) and len({(d.applied_index, tuple(d.state)) for d in good}) == 1
        if same or time.monotonic() >= deadline:
            break
        time.sleep(0.3)
    for i, d in dumps.items():
        inv = h.invoke("checker", "dump", None, node=i)
        if isinstance(d, Exception):
            h.complete(inv, "fail", value={"node": i}, error=str(d)[:500])
        else:
            digest = hashlib.sha256("\n".join(d.state).encode()).hexdigest()[:16]
            h.complete(inv, "ok", value={"node": i, "applied_index": d.applied_index, "digest": digest,
                                         "lines": len(d.state)})
    return dumps


def check(ops, workload):
    names = WORKLOADS[workload].checkers
    return {n: checkers.CHECKERS[n](ops) for n in names}


def summarise(name, ops, checks, problems, errors):
    valid = True
    for c in checks.values():
        if c["valid"] is False:
            valid = False
        elif c["valid"] == "unknown" and valid is True:
            valid = "unknown"
    if problems or errors:
        valid = False
    return {"scenario": name, "valid": valid, "figures": checkers.figures(ops), "checks": checks,
            "problems": problems + errors}


def run_scenario(name, results_dir, duration=DURATION, seed=None, log=print, backend_kind="process"):
    """Runs one scenario; returns its result dict (also written as
    result.json next to history.jsonl and latency.png)."""
    wname, nname = parse(name)
    out = pathlib.Path(results_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    seed = int(time.time() * 1000) % 1000000 if seed is None else seed
    rng = random.Random(seed)
    run_id = "%s-%d" % (name, seed)
    h = hist.History(out / "history.jsonl")
    h.add("setup", "info", "scenario", {"scenario": name, "seed": seed, "duration": duration,
                                        "backend": backend_kind})
    b = make_backend(backend_kind, out / "nodes", seed, nname)
    errors, problems = [], []
    w = n = None
    try:
        b.start()
        w = WORKLOADS[wname](b, h, rng, run_id)
        if nname.startswith("clock-"):
            w.message_expiry = 3600   # so that the wall clock matters to the registers
        w.setup()
        n = Nemesis(nname, b, h, rng, target_hint=w.target_node)
        w.start()
        n.start(duration)
        time.sleep(duration)
        h.add("setup", "info", "workload-end")
        w.stop()
        n.finish()
        errors += ["nemesis: %s" % e for e in n.errors]
        b.wait_leader()
        w.final()
        errors += ["workload: %s" % e for e in w.errors]
        if "convergence" in WORKLOADS[wname].checkers:
            record_dumps(b, h)
    except Exception as e:
        errors.append("run aborted: %r" % e)
        (out / "error.txt").write_text(traceback.format_exc())
    finally:
        if w is not None:
            w.stopping.set()
        try:
            problems = b.stop()
        except Exception as e:
            problems = ["stopping the nodes: %r" % e]
        if n is not None:
            problems = n.problems + problems
        h.close()
    ops = h.ops
    result = summarise(name, ops, check(ops, wname), problems, errors)
    result.update({"seed": seed, "duration": duration, "dir": str(out)})
    result["png"] = report.plot(ops, out / "latency.png", report.short_title(result),
                                lost=result["checks"].get("queue", {}).get("lost_messages", ()))
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    log(report.verdict_line(result))
    return result


def check_file(path, workload):
    """The checkers of workload on a recorded history file."""
    ops = hist.load(path)
    return summarise(pathlib.Path(path).parent.name, ops, check(ops, workload), [], [])
