"""Command line of the fault suite (tests/jepsen/run.sh wraps it).

    run.py                      the short run (scenarios.SHORT)
    run.py --all                every workload with every nemesis
    run.py SCENARIO ...         those (workload-nemesis, e.g. queue-pause-leader)
    run.py --list               the scenario names
    run.py --check HISTORY --workload W   the checkers again on a recorded history

Options: --duration S (per scenario, default 20), --results DIR (default
$STARLING_JEPSEN_RESULTS, else <build>/jepsen-results/<time>), --seed N,
--backend process|compose (default process: starlingd processes on
127.0.0.1-3; compose: the docker compose cluster of deploy/docker, where the
short run is scenarios.SHORT_COMPOSE and --all covers the nemeses it can do,
scenarios.COMPOSE_NEMESES).
Prints one verdict line per scenario and the index page; exits 1 when a
checker failed (or a node crashed, or the run could not be completed).
"""

import argparse
import datetime
import json
import os
import pathlib
import sys

import backend
import report
import scenarios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--duration", type=float, default=scenarios.DURATION)
    ap.add_argument("--results")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--check")
    ap.add_argument("--workload")
    ap.add_argument("--backend", choices=("process", "compose"), default="process")
    a = ap.parse_args(argv)
    backend.exit_cleanly_on_sigterm()
    if a.list:
        print("\n".join(scenarios.ALL_COMPOSE if a.backend == "compose" else scenarios.ALL))
        return 0
    if a.check:
        res = scenarios.check_file(a.check, a.workload or scenarios.parse(pathlib.Path(a.check).parent.name)[0])
        print(report.verdict_line(res))
        print(json.dumps(res["checks"], indent=1, default=str))
        return 0 if res["valid"] is not False else 1
    if a.backend == "compose":
        import compose
        why = compose.available()
        if why:
            print("fault suite: --backend compose: %s" % why, file=sys.stderr)
            return 2
        names = scenarios.ALL_COMPOSE if a.all else (a.scenarios or scenarios.SHORT_COMPOSE)
    else:
        names = scenarios.ALL if a.all else (a.scenarios or scenarios.SHORT)
    for n in names:
        nemesis = scenarios.parse(n)[1]
        if a.backend == "compose" and nemesis not in scenarios.COMPOSE_NEMESES:
            print("fault suite: %s: the compose backend cannot do %s (it can: %s)" % (
                n, nemesis, ", ".join(scenarios.COMPOSE_NEMESES)), file=sys.stderr)
            return 2
    results_dir = pathlib.Path(a.results or os.environ.get("STARLING_JEPSEN_RESULTS") or default_results())
    results_dir.mkdir(parents=True, exist_ok=True)
    print("fault suite: %d scenario(s), %.0f s each, %s backend, results in %s" % (
        len(names), a.duration, a.backend, results_dir), flush=True)
    results = []
    for n in names:
        results.append(scenarios.run_scenario(n, results_dir, a.duration, a.seed,
                                               log=lambda line: print(line, flush=True), backend_kind=a.backend))
        report.index(results, results_dir / "index.html")
    failed = [r for r in results if r["valid"] is False]
    print("%d scenario(s): %d passed, %d failed, %d undecided; %s" % (
        len(results), sum(1 for r in results if r["valid"] is True), len(failed),
        sum(1 for r in results if r["valid"] == "unknown"), results_dir / "index.html"))
    return 1 if failed else 0


def default_results():
    starlingd = pathlib.Path(os.environ.get("STARLINGD") or
                             pathlib.Path(__file__).resolve().parents[2] / "build" / "broker" / "starlingd")
    build = starlingd.parent.parent
    base = build if build.is_dir() else pathlib.Path("/tmp")
    return base / "jepsen-results" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


if __name__ == "__main__":
    sys.exit(main())
