#!/usr/bin/env bash
# Sets up the machine (deploy/setup.sh), builds Starling and runs one broker node
# with embedded defaults: MQTT on 127.0.0.1:1883 for anonymous clients, data in
# ./starling-data. Extra arguments go to starlingd (e.g. -p 1884 -v, or
# -c deploy/starling.conf). Without -c or --bind the listener is bound to
# 127.0.0.1: a node open to the network needs a password_file (or a deliberate
# allow_anonymous true, which starlingd warns about): see docs/auth.md.
set -euo pipefail
cd "$(dirname "$0")/.."
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
