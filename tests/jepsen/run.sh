#!/usr/bin/env bash
# The fault suite (docs/jepsen.md): three starlingd processes on 127.0.0.1-3,
# a workload with a recorded history, a nemesis, checkers.
#
#   tests/jepsen/run.sh                 the short run (3 scenarios, ~20 s each)
#   tests/jepsen/run.sh --all           every workload x every nemesis
#   tests/jepsen/run.sh SCENARIO ...    some (see --list)
#   tests/jepsen/run.sh --check build/jepsen-results/T/S/history.jsonl
#   tests/jepsen/run.sh --backend compose [--all | SCENARIO ...]
#                                       against the docker compose cluster
#
# Needs root (iptables for the partitions). STARLINGD defaults to
# build/broker/starlingd; results go to build/jepsen-results/<time>/ unless
# --results DIR or STARLING_JEPSEN_RESULTS. Exit status 1 when a checker
# failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export STARLINGD="${STARLINGD:-$PWD/build/broker/starlingd}"
export STARLINGCTL="${STARLINGCTL:-$(dirname "$(dirname "$STARLINGD")")/tools/starlingctl}"
exec /usr/bin/python3 tests/jepsen/run.py "$@"
