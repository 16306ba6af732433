"""How long a node cut off from its peers takes to fence itself, on either
backend (docs/jepsen.md, "The fence after a cut"):

    tests/jepsen/fence.py [--backend process|compose] [--repeat N] [--leader]

Starts a cluster, then N times: cuts a follower (or, with --leader, the
leader) off from both others (process: iptables DROP of its cluster
traffic; compose: docker network disconnect), waits for its log's fence
line ("no leader for T ms: disconnecting ..."), heals, waits for a leader.
Prints, per cut, the seconds from the cut to the node's "no leader" line
(libraft gave the leader up: a follower after its randomised election
timeout, a leader after losing its majority) and to the fence line, from
the log's timestamps. Root for the process backend (iptables).
"""

import argparse
import datetime
import pathlib
import re
import statistics
import sys
import tempfile
import time

import backend
import harness

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z .*?(no leader \(term|no leader for \d+ ms)", re.M)


def log_text(b, n):
    if isinstance(b, backend.ProcessBackend):
        return b.node(n).run_log()
    return b.docker("logs", b.container(n), check=False).stderr


def when(stamp):
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def measure(b, node, timeout=30.0):
    """(seconds to 'no leader', seconds to the fence line) after cutting node."""
    before = len(log_text(b, node))
    t0 = time.time()
    b.cut([(node, o) for o in b.ids if o != node])
    try:
        def fenced():
            found = {}
            for m in LINE.finditer(log_text(b, node)[before:]):
                found.setdefault("fence" if "for" in m.group(2) else "lost", when(m.group(1)))
            return found if "fence" in found else None
        found = harness.wait_for(fenced, timeout, "node %d did not fence itself" % node, interval=0.2)
    finally:
        b.heal()
    return (found.get("lost", float("nan")) - t0, found["fence"] - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("process", "compose"), default="process")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--leader", action="store_true")
    a = ap.parse_args(argv)
    backend.exit_cleanly_on_sigterm()
    work = pathlib.Path(tempfile.mkdtemp(prefix="starling-fence-"))
    if a.backend == "compose":
        import compose
        b = compose.ComposeBackend(work, "fence")
    else:
        b = backend.ProcessBackend(work, "fence")
    b.start()
    rows = []
    try:
        for i in range(a.repeat):
            leader = b.wait_leader()
            node = leader if a.leader else [n for n in b.ids if n != leader][-1]
            lost, fence = measure(b, node)
            rows.append((lost, fence))
            print("cut %d: node %d (%s): no leader after %.2f s, fenced after %.2f s" % (
                i + 1, node, "leader" if a.leader else "follower", lost, fence), flush=True)
            time.sleep(1.0)
            b.wait_leader()
            time.sleep(2.0)
    finally:
        b.stop()
    if rows:
        fences = [r[1] for r in rows]
        print("%s backend, %s cut off, %d cuts: fenced after %.2f s median (min %.2f, max %.2f); "
              "no leader after %.2f s median" % (a.backend, "leader" if a.leader else "follower", len(rows),
                                                 statistics.median(fences), min(fences), max(fences),
                                                 statistics.median(r[0] for r in rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
