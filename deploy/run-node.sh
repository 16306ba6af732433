#!/usr/bin/env bash
# Sets up the machine (deploy/setup.sh), builds Starling and runs one broker node
# with embedded defaults: MQTT on 0.0.0.0:1883, data in ./starling-data.
# Extra arguments go to starlingd (e.g. -p 1884 -v, or -c deploy/starling.conf).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/setup.sh
if [ -f build/build.ninja ]; then
    meson setup --reconfigure build >/dev/null
else
    meson setup build --buildtype=release >/dev/null
fi
meson compile -C build starlingd >/dev/null
exec ./build/broker/starlingd --data-dir ./starling-data "$@"
