#!/usr/bin/env bash
# Sets up the machine (deploy/setup.sh), builds Starling and runs one broker node
# with embedded defaults: MQTT on 127.0.0.1:1883 for anonymous clients, data in
# ./starling-data. Extra arguments go to starlingd (e.g. -p 1884 -v, or
# -c deploy/starling.conf). Without -c or --bind the listener is bound to
# 127.0.0.1: a node open to the network needs a password_file (or a deliberate
# allow_anonymous true, which starlingd warns about): see docs/auth.md.
#
# If the MQTT port is already taken (typically by Debian's mosquitto service,
# which listens on 1883 once the package is installed and started), this says
# so and exits with 1 before setting up or building anything: it never stops
# another program. With -c, --bind or --set listener/port the addresses are the
# configuration's, and starlingd itself reports a port in use.
set -euo pipefail
cd "$(dirname "$0")/.."

# The port the first listener will take, or "" when the arguments make it
# something this script does not work out.
mqtt_port() {
    local port=1883
    while [ $# -gt 0 ]; do
        case "$1" in
            -p) port=${2:-}; shift ;;
            -p*) port=${1#-p} ;;
            --port) port=${2:-}; shift ;;
            --port=*) port=${1#--port=} ;;
            -c*|--config|--config=*|--bind|--bind=*) echo ""; return ;;
            --set) case "${2:-}" in listener=*|port=*) echo ""; return ;; esac; shift ;;
            --set=listener=*|--set=port=*) echo ""; return ;;
        esac
        shift
    done
    case "$port" in ''|*[!0-9]*) echo "" ;; *) echo "$port" ;; esac
}

port=$(mqtt_port "$@")
if [ -n "$port" ] && command -v ss >/dev/null; then
    taken=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    if [ -n "$taken" ]; then
        who=$(printf '%s\n' "$taken" | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1)
        echo "run-node.sh: port $port is already in use${who:+ by $who}, so Starling cannot listen on it." \
             "Run it on another port (./deploy/run-node.sh -p 1884), or stop that program yourself if you" \
             "do not need it (Debian's mosquitto service: sudo systemctl stop mosquitto)." >&2
        exit 1
    fi
fi

./deploy/setup.sh
if [ -f build/build.ninja ]; then
    meson setup --reconfigure build >/dev/null
else
    meson setup build --buildtype=release >/dev/null
fi
meson compile -C build starlingd >/dev/null
bind=(--bind 127.0.0.1)
for a in "$@"; do
    case "$a" in -c|--config|--config=*|--bind|--bind=*) bind=() ;; esac
done
exec ./build/broker/starlingd --data-dir ./starling-data "${bind[@]}" "$@"
