#!/usr/bin/env bash
# The whole test suite: setup, build, unit tests (meson + Criterion/TAP),
# integration tests (pytest against a real starlingd), cluster tests (pytest
# against three starlingd nodes on 127.0.0.x), the fault suite's short run
# (tests/jepsen), the fuzzers for a short fixed
# time each (tests/fuzz/run.sh), then one totals line.
#
#   ./tests/run.sh                 everything
#   ./tests/run.sh --unit          build + unit tests only
#   ./tests/run.sh --integration   build + integration, cluster and fault-suite tests only
#   ./tests/run.sh --fuzz          only the fuzzers (build-fuzz, clang)
#   ./tests/run.sh --fuzz-long     only the fuzzers, an hour each
#   ./tests/run.sh --asan          the same in build-asan with ASan + UBSan
#   ./tests/run.sh --long          also the long fault/soak runs (STARLING_LONG=1)
#   ./tests/run.sh --transport T   the integration tests over T: tcp (default),
#                                  tls, ws, wss, or all (each of the four in turn)
#   ./tests/run.sh --auth          with authentication on (STARLING_TEST_AUTH=1)
#
# STARLING_FUZZ_SECONDS: seconds per fuzz target (default 20; 3600 with
# --fuzz-long); each target counts as one test, a crash as a failure.
#
# Extra arguments after -- go to both pytest runs (e.g. -- -k retain -x).
# Environment: STARLING_BUILD_DIR overrides the build directory;
# STARLING_TEST_BROKER=mosquitto runs the integration tests against Mosquitto
# (they then run even if the build failed; the cluster tests skip).
#
# The last line is exactly "N passed, N failed"; the exit status is 0 only if
# nothing failed (a failed setup or build counts as one failure).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$(pwd)
PY=/usr/bin/python3          # the system python has paho-mqtt and pytest

run_unit=1
run_integration=1
run_fuzz=1
asan=0
pytest_extra=()
transports=(tcp)
while [ $# -gt 0 ]; do
    case "$1" in
        --unit) run_unit=1; run_integration=0; run_fuzz=0 ;;
        --integration) run_unit=0; run_integration=1; run_fuzz=0 ;;
        --fuzz) run_unit=0; run_integration=0; run_fuzz=1 ;;
        --fuzz-long) run_unit=0; run_integration=0; run_fuzz=1
            export STARLING_FUZZ_SECONDS=${STARLING_FUZZ_SECONDS:-3600} ;;
        --asan) asan=1 ;;
        --long) export STARLING_LONG=1 ;;
        --auth) export STARLING_TEST_AUTH=1 ;;
        --transport)
            case "${2:-}" in
                tcp|tls|ws|wss) transports=("$2") ;;
                all) transports=(tcp tls ws wss) ;;
                *) echo "run.sh: --transport takes tcp, tls, ws, wss or all" >&2; exit 2 ;;
            esac
            shift ;;
        --) shift; pytest_extra=("$@"); break ;;
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$asan" = 1 ]; then
    BUILD=${STARLING_BUILD_DIR:-build-asan}
    meson_opts=(-Db_sanitize=address,undefined -Db_lundef=false)
    export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:print_summary=1"
    export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:print_summary=1"
    export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"
else
    BUILD=${STARLING_BUILD_DIR:-build}
    meson_opts=()
fi
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
export STARLINGD="${STARLINGD:-$BUILD/broker/starlingd}"
export STARLING_BENCH="${STARLING_BENCH:-$BUILD/tools/starling-bench}"
export STARLINGCTL="${STARLINGCTL:-$BUILD/tools/starlingctl}"

step_failures=0
note() { printf '\n=== %s\n' "$*"; }
step_failed() { echo "run.sh: FAILED: $*" >&2; step_failures=$((step_failures + 1)); }

mosquitto_mode=0
[ "${STARLING_TEST_BROKER:-starling}" = mosquitto ] && mosquitto_mode=1

# 1. Setup (idempotent: deploy/setup.sh keeps a stamp).
note "setup"
if [ "$(id -u)" = 0 ]; then
    bash deploy/setup.sh || step_failed "deploy/setup.sh"
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo bash deploy/setup.sh || step_failed "deploy/setup.sh"
else
    echo "run.sh: not root and no passwordless sudo; skipping deploy/setup.sh"
fi

# 2. Build (the fuzzers build in their own directory, step 6).
build_ok=1
if [ "$run_unit" = 0 ] && [ "$run_integration" = 0 ]; then
    : # --fuzz only
elif [ -f "$BUILD/meson-private/coredata.dat" ]; then
    note "meson setup $BUILD"
    meson setup --reconfigure "$BUILD" "${meson_opts[@]}" || { step_failed "meson setup"; build_ok=0; }
else
    note "meson setup $BUILD"
    meson setup "$BUILD" "${meson_opts[@]}" || { step_failed "meson setup"; build_ok=0; }
fi
if [ "$build_ok" = 1 ] && { [ "$run_unit" = 1 ] || [ "$run_integration" = 1 ]; }; then
    note "meson compile"
    meson compile -C "$BUILD" || { step_failed "meson compile"; build_ok=0; }
fi

# 3. Unit tests.
unit_ran=0
if [ "$run_unit" = 1 ] && [ "$build_ok" = 1 ]; then
    note "unit tests (meson test)"
    rm -f "$BUILD/meson-logs/testlog.json"
    meson test -C "$BUILD" --print-errorlogs
    unit_rc=$?
    unit_ran=1
    # meson exits 125 when there are no tests to run; other codes mean
    # failures, which the totals below count from testlog.json.
    if [ "$unit_rc" != 0 ] && [ ! -f "$BUILD/meson-logs/testlog.json" ]; then
        [ "$unit_rc" = 125 ] || step_failed "meson test (exit $unit_rc, no testlog.json)"
    fi
fi

# Runs pytest on one folder (SECONDS at most) into a JUnit XML file, which the
# totals count. A run that left no XML is a failed step, unless pytest exited
# 0, or 5 (no tests collected, e.g. after -k).
run_pytest() {  # FOLDER XML SECONDS
    local rc
    mkdir -p "$BUILD"
    rm -f "$2"
    timeout --kill-after=30 "$3" "$PY" -m pytest "$1" -q -p no:cacheprovider \
        --junitxml="$2" "${pytest_extra[@]}"
    rc=$?
    case "$rc" in
        0|5) ;;
        *) [ -f "$2" ] || step_failed "pytest $1 (exit $rc, no junit xml)" ;;
    esac
}

# 4. Integration tests.
# Over each transport asked for (--transport), its own JUnit file; the
# totals count them all ("junit" is their list, colon-separated).
junit=""
integration_ran=0
if [ "$run_integration" = 1 ] && { [ "$build_ok" = 1 ] || [ "$mosquitto_mode" = 1 ]; }; then
    for t in "${transports[@]}"; do
        x="$BUILD/integration.xml"
        [ "$t" = tcp ] || x="$BUILD/integration-$t.xml"
        note "integration tests over $t (pytest, broker: ${STARLING_TEST_BROKER:-starling})"
        STARLING_TEST_TRANSPORT=$t run_pytest tests/integration "$x" 3000
        junit="${junit:+$junit:}$x"
    done
    integration_ran=1
fi

# 5. Cluster tests: they run whenever the integration tests run, but need the
# starlingd just built (in Mosquitto mode they skip).
cluster_junit="$BUILD/cluster.xml"
cluster_ran=0
if [ "$run_integration" = 1 ] && [ "$build_ok" = 1 ]; then
    note "cluster tests (pytest tests/cluster)"
    run_pytest tests/cluster "$cluster_junit" 1800
    cluster_ran=1
fi

# 5b. The fault suite's short run (tests/jepsen: the checkers' self-tests and
# three ~20 s scenarios against three nodes; docs/jepsen.md). Histories,
# pictures and index.html go to $BUILD/jepsen-results/suite/.
jepsen_junit="$BUILD/jepsen.xml"
jepsen_ran=0
if [ "$run_integration" = 1 ] && [ "$build_ok" = 1 ] && [ "$mosquitto_mode" = 0 ]; then
    note "fault suite, short run (pytest tests/jepsen)"
    rm -rf "$BUILD/jepsen-results/suite"
    export STARLING_JEPSEN_RESULTS="$BUILD/jepsen-results/suite"
    run_pytest tests/jepsen "$jepsen_junit" 600
    jepsen_ran=1
fi

# 6. Fuzzers: each target for STARLING_FUZZ_SECONDS (tests/fuzz/run.sh writes
# one result line per target, which the totals count; a crash's input is
# kept under build-fuzz/fuzz-work/TARGET/crashes/ and its path printed).
FUZZ_BUILD=${STARLING_FUZZ_BUILD_DIR:-build-fuzz}
case "$FUZZ_BUILD" in /*) ;; *) FUZZ_BUILD="$ROOT/$FUZZ_BUILD" ;; esac
fuzz_results="$FUZZ_BUILD/fuzz-work/results.txt"
fuzz_ran=0
if [ "$run_fuzz" = 1 ]; then
    note "fuzzers (tests/fuzz/run.sh, ${STARLING_FUZZ_SECONDS:-20} s each)"
    rm -f "$fuzz_results"
    STARLING_FUZZ_BUILD_DIR="$FUZZ_BUILD" tests/fuzz/run.sh
    fuzz_ran=1
fi

# 7. Totals.
note "totals"
"$PY" - "$BUILD/meson-logs/testlog.json" "$junit" "$unit_ran" "$integration_ran" "$step_failures" \
    "$cluster_junit" "$cluster_ran" "$fuzz_results" "$fuzz_ran" "$jepsen_junit" "$jepsen_ran" <<'PYEOF'
"""Counts unit results from meson's testlog.json (TAP subtests when the
test printed TAP, else one per test), integration and cluster results
from their pytest JUnit XML files (one per test case) and fuzz results from
tests/fuzz/run.sh's results.txt (one per target), and prints the totals."""
import json
import re
import sys
import xml.etree.ElementTree as ET

testlog, junit, unit_ran, integration_ran, step_failures, cluster_junit, cluster_ran = sys.argv[1:8]
fuzz_results, fuzz_ran, jepsen_junit, jepsen_ran = sys.argv[8:12]
TAP = re.compile(r"^(not ok|ok)\b(.*)$")


def count_unit(path):
    passed = failed = skipped = 0
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        return None
    for line in lines:
        if not line.strip():
            continue
        t = json.loads(line)
        result = t.get("result", "")
        out = (t.get("stdout") or "").splitlines()
        sub_p = sub_f = sub_s = 0
        bailed = False
        for l in out:
            l = l.strip()
            if l.startswith("Bail out!"):
                bailed = True
            m = TAP.match(l)
            if not m:
                continue
            directive = m.group(2).upper()
            if "# SKIP" in directive:
                sub_s += 1
            elif m.group(1) == "ok" or "# TODO" in directive:
                sub_p += 1
            else:
                sub_f += 1
        if sub_p + sub_f + sub_s:
            passed += sub_p
            skipped += sub_s
            failed += sub_f
            # A crash or bail-out after some subtests still fails the test.
            if (bailed or result not in ("OK", "SKIP", "EXPECTEDFAIL")) and sub_f == 0:
                failed += 1
        elif result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
    return passed, failed, skipped


def count_junit(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


total_p = total_f = total_s = 0
if unit_ran == "1":
    u = count_unit(testlog)
    if u is None:
        print("unit: no testlog.json (no unit tests ran)")
    else:
        print("unit: %d passed, %d failed, %d skipped" % u)
        total_p, total_f, total_s = total_p + u[0], total_f + u[1], total_s + u[2]
suites = [("integration" if len(junit.split(":")) == 1 else "integration (%s)" % (
              p.rsplit("integration-", 1)[1][:-4] if "integration-" in p else "tcp"), p, integration_ran)
          for p in junit.split(":") if p]
for label, path, ran in suites + [("cluster", cluster_junit, cluster_ran), ("jepsen", jepsen_junit, jepsen_ran)]:
    if ran != "1":
        continue
    i = count_junit(path)
    if i is None:
        print("%s: no results (%s missing)" % (label, path))
    else:
        print("%s: %d passed, %d failed, %d skipped" % ((label,) + i))
        total_p, total_f, total_s = total_p + i[0], total_f + i[1], total_s + i[2]
def count_fuzz(path):
    """results.txt: TARGET pass|fail EXECUTIONS COV FT [CRASH_FILE]"""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        return None
    passed = failed = 0
    for line in lines:
        f = line.split()
        if len(f) < 2:
            continue
        if f[1] == "pass":
            passed += 1
        else:
            failed += 1
            print("fuzz: %s failed%s" % (f[0], (": crashing input " + f[5]) if len(f) > 5 else ""))
    return passed, failed, 0


if fuzz_ran == "1":
    z = count_fuzz(fuzz_results)
    if z is None:
        print("fuzz: no results (%s missing)" % fuzz_results)
        total_f += 1
    else:
        print("fuzz: %d passed, %d failed" % z[:2])
        total_p, total_f = total_p + z[0], total_f + z[1]
steps = int(step_failures)
if steps:
    print("setup/build steps failed: %d (each counted as one failure)" % steps)
    total_f += steps
print("skipped: %d" % total_s)
print("%d passed, %d failed" % (total_p, total_f))
sys.exit(1 if total_f else 0)
PYEOF
exit $?
