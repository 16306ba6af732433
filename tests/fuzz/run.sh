#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -Dfuzz=true, in their own build
# directory) and runs each for a fixed time, replaying its committed seeds
# and regression inputs first.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default $STARLING_FUZZ_SECONDS, else 20); TARGET names
# pick some (default: all). Environment: STARLING_FUZZ_BUILD_DIR (default
# build-fuzz), STARLING_FUZZ_NICE=1 runs under nice -n 19, STARLING_FUZZ_OPEN=1
# also replays the open findings in tests/fuzz/open/TARGET/,
# STARLING_FUZZ_SOCKET=1 makes fuzz_admin and fuzz_cluster send each input over
# a loopback connection (slow) rather than hand it to the connection code with
# no socket, STARLING_FUZZ_RUNS=N stops a target after N executions if that
# comes before SECONDS, STARLING_FUZZ_ARGS adds libFuzzer options (e.g.
# -max_len=512: shorter inputs, more of them). A long run, e.g. an hour each: tests/fuzz/run.sh 3600;
# ten million executions of one target, within two hours at the most:
#   STARLING_FUZZ_RUNS=10000000 tests/fuzz/run.sh 7200 fuzz_cluster
#
# Inputs the fuzzer finds go to BUILD/fuzz-work/TARGET/corpus (kept between
# runs); a crash is written to BUILD/fuzz-work/TARGET/crashes/ and its path
# printed. One line per target goes to BUILD/fuzz-work/results.txt:
#   TARGET pass|fail EXECUTIONS COV FT [CRASH_FILE]
# The exit status is 0 only when every target passed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
ROOT=$(pwd)
SECONDS_EACH=${STARLING_FUZZ_SECONDS:-20}
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
    SECONDS_EACH=$1
    shift
fi
ALL=(fuzz_decode fuzz_broker fuzz_admin fuzz_cluster fuzz_cluster_cmd fuzz_snapshot fuzz_store_record fuzz_config fuzz_auth fuzz_ws)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi
BUILD=${STARLING_FUZZ_BUILD_DIR:-build-fuzz}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
WORK="$BUILD/fuzz-work"
NICE=()
[ "${STARLING_FUZZ_NICE:-0}" = 1 ] && NICE=(nice -n 19)
RUNS=()
[[ "${STARLING_FUZZ_RUNS:-}" =~ ^[0-9]+$ ]] && RUNS=(-runs="$STARLING_FUZZ_RUNS")
read -r -a EXTRA <<<"${STARLING_FUZZ_ARGS:-}"

mkdir -p "$WORK"
RESULTS="$WORK/results.txt"
: >"$RESULTS"

if ! command -v clang >/dev/null; then
    echo "fuzz: clang not found; cannot build the fuzzers" >&2
    echo "build fail 0 0 0" >"$RESULTS"
    exit 1
fi
if [ -f "$BUILD/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$BUILD" -Dfuzz=true -Dtests=false >/dev/null
else
    CC=clang meson setup "$BUILD" -Dfuzz=true -Dtests=false >/dev/null
fi || { echo "fuzz: meson setup failed" >&2; echo "build fail 0 0 0" >"$RESULTS"; exit 1; }
if ! ninja -C "$BUILD" "${TARGETS[@]/#/tests/fuzz/}" >"$WORK/build.log" 2>&1; then
    tail -30 "$WORK/build.log" >&2
    echo "fuzz: build failed (log: $WORK/build.log)" >&2
    echo "build fail 0 0 0" >"$RESULTS"
    exit 1
fi

failed=0
for t in "${TARGETS[@]}"; do
    bin="$BUILD/tests/fuzz/$t"
    dir="$WORK/$t"
    mkdir -p "$dir/corpus" "$dir/crashes"
    seeds=("$ROOT/tests/fuzz/corpus/$t")
    if [ "$t" = fuzz_decode ]; then
        seeds=("$ROOT/tests/fuzz/corpus")
        [ -d "$ROOT/tests/fuzz/regressions" ] && seeds+=("$ROOT/tests/fuzz/regressions")
    fi
    # known, still open findings (tests/fuzz/open/TARGET/): replayed on request
    [ "${STARLING_FUZZ_OPEN:-0}" = 1 ] && [ -d "$ROOT/tests/fuzz/open/$t" ] && seeds+=("$ROOT/tests/fuzz/open/$t")
    dict=()
    [ -f "$ROOT/tests/fuzz/$t.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
    [ "$t" = fuzz_broker ] && dict=(-dict="$ROOT/tests/fuzz/fuzz_decode.dict") # MQTT, as fuzz_decode
    log="$dir/last.log"
    echo "fuzz: $t for ${SECONDS_EACH}s (log: $log)"
    "${NICE[@]}" "$bin" -max_total_time="$SECONDS_EACH" "${RUNS[@]}" "${EXTRA[@]}" -print_final_stats=1 -timeout=30 \
        -artifact_prefix="$dir/crashes/" "${dict[@]}" "$dir/corpus" "${seeds[@]}" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    if [ "$rc" = 0 ]; then
        echo "fuzz: $t passed: ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}"
        echo "$t pass ${execs:-0} ${cov:-0} ${ft:-0}" >>"$RESULTS"
    else
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        failed=$((failed + 1))
        grep -E '^==[0-9]+==ERROR|^SUMMARY|^    #[0-9] ' "$log" | head -12 >&2
        echo "fuzz: $t FAILED (exit $rc): crashing input ${crash:-none written}; log $log" >&2
        echo "fuzz:   reproduce: $bin ${crash:-<input>}" >&2
        echo "$t fail ${execs:-0} ${cov:-0} ${ft:-0} ${crash:-}" >>"$RESULTS"
    fi
done
exit $((failed > 0))
