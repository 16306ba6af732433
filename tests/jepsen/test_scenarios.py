"""The short run of the fault suite in the default test suite: each
scenario of scenarios.SHORT (about 20 s of faults, then healing, final reads
and the convergence check) is one test. A scenario passes only if every
checker accepts its history and no node crashed; a fault the cluster does
not survive fails the test with its figures (lost, duplicated...). The
results (histories, PNGs, index.html) stay under STARLING_JEPSEN_RESULTS or
<build>/jepsen-results/<time>/ and their path is printed."""

import os
import shutil
import subprocess

import pytest

import backend
import report
import run
import scenarios

DURATION = float(os.environ.get("STARLING_JEPSEN_DURATION", scenarios.DURATION))


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
        report.index(results, __import__("pathlib").Path(d) / "index.html")
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
    assert res["valid"] is not False, "%s\nchecks: %s\nhistory: %s/history.jsonl" % (
        line, {k: v["summary"] for k, v in res["checks"].items()}, res["dir"])
