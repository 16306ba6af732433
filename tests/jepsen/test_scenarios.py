"""The short run of the fault suite in the default test suite: each
scenario of scenarios.SHORT (about 20 s of faults, then healing, final reads
and the convergence check) is one test. A scenario passes only if every
checker accepts its history and no node crashed; a fault the cluster does
not survive fails the test with its figures (lost, duplicated...). The
results (histories, PNGs, index.html) stay under STARLING_JEPSEN_RESULTS or
<build>/jepsen-results/<time>/ and their path is printed."""

import os
import pathlib
import shutil
import subprocess

import pytest

import backend
import report
import run
import scenarios

DURATION = float(os.environ.get("STARLING_JEPSEN_DURATION", scenarios.DURATION))

# Losses the cluster does not survive yet (docs/jepsen.md, "What the cluster
# fails"); issue 15 (durable sessions, zero acknowledged loss) is the fix.
# Such a scenario is reported as an expected failure WITH its figures (pytest
# -rx prints them; the verdict line is in the output and the results page),
# so that the default suite stays green while the loss stays visible; once
# fixed it passes, and the entry goes.
KNOWN_LOSS = {
    # empty since durable sessions (issue 15): queue-partition-leader and
    # ownership-kill-subscriber lost 103-248 and 1-2 acknowledged messages a
    # run before, 0 in every run since
}


def _iptables_usable():
    if os.geteuid() != 0 or not shutil.which("iptables"):
        return False
    return subprocess.run(["iptables", "-w", "-S", "INPUT"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


@pytest.fixture(scope="module")
def results_dir():
    d = os.environ.get("STARLING_JEPSEN_RESULTS") or str(run.default_results())
    os.makedirs(d, exist_ok=True)
    results = []
    yield d, results
    if results:
        report.index(results, pathlib.Path(d) / "index.html")
        print("\nfault suite results: %s/index.html" % d)


@pytest.mark.parametrize("name", scenarios.SHORT)
def test_scenario(name, results_dir):
    if backend.harness.KIND != "starling":
        pytest.skip("the fault suite runs starlingd only")
    if "partition" in name and not _iptables_usable():
        pytest.skip("partitions need iptables (root)")
    d, results = results_dir
    res = scenarios.run_scenario(name, d, DURATION)
    results.append(res)
    line = report.verdict_line(res)
    print(line)
    if res["valid"] is False and name in KNOWN_LOSS:
        pytest.xfail("known loss (issue 15): %s: %s" % (KNOWN_LOSS[name], line))
    assert res["valid"] is not False, "%s\nchecks: %s\nhistory: %s/history.jsonl" % (
        line, {k: v["summary"] for k, v in res["checks"].items()}, res["dir"])


def test_stale_rules_removed_and_only_those():
    """A scenario starts by deleting the tagged rules of runs whose process is
    gone; rules of a live run and untagged rules stay."""
    if not _iptables_usable():
        pytest.skip("needs iptables (root)")
    dead = int(open("/proc/sys/kernel/pid_max").read()) + 1  # never a process id
    spec = ["-s", "127.0.0.9", "-d", "127.0.0.9", "-p", "tcp", "--dport", "9", "-j", "DROP"]
    rules = {name: spec[:-2] + ["-m", "comment", "--comment", comment] + spec[-2:] for name, comment in (
        ("dead", "%s%d-x" % (backend.TAG, dead)), ("live", "%s%d-x" % (backend.TAG, os.getpid())),
        ("other", "not-ours-%d" % dead))}

    def present(rule):
        return subprocess.run(["iptables", "-w", "-C", "INPUT"] + rule, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    for rule in rules.values():
        subprocess.run(["iptables", "-w", "-I", "INPUT"] + rule, check=True)
    try:
        assert backend.remove_stale_rules() >= 1
        assert not present(rules["dead"])
        assert present(rules["live"]) and present(rules["other"])
    finally:
        for rule in rules.values():
            while present(rule):
                subprocess.run(["iptables", "-w", "-D", "INPUT"] + rule, check=True)
