#!/usr/bin/env bash
# Installs everything Starling needs to build, run and test on Debian 12 (run as root).
# bookworm-backports (libraft-dev 0.22, meson 1.7) is derived from the machine's own
# apt sources: the same mirror URI as the bookworm suite, never a hard-coded host.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

stamp=/var/lib/starling-setup.v2
if [ -f "$stamp" ] && [ "${STARLING_SETUP_FORCE:-0}" != 1 ]; then
    exit 0
fi

# shellcheck source=deploy/apt-mirror.sh
. "$(dirname "$0")/apt-mirror.sh"

backports_list=/etc/apt/sources.list.d/starling-backports.list
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    uri=$(starling_debian_mirror) || uri=""
    [ -n "$uri" ] || { echo "setup.sh: no bookworm apt source found to derive backports from" >&2; exit 1; }
    echo "deb $uri bookworm-backports main" > "$backports_list"
fi

# Installing Debian's mosquitto package (the reference broker for tests and
# benchmarks, which start their own instances on free ports) also starts its
# system service on port 1883, where ./deploy/run-node.sh puts Starling. This
# script never stops or disables anything; instead, on a machine that does not
# have the package yet, the service is not started by this installation: a
# policy-rc.d (invoke-rc.d(8), the standard Debian hook that Docker images use)
# denies the start of mosquitto only, for the length of the apt-get run, and is
# removed after it. The service stays enabled as Debian installs it (it starts
# at the next boot, or now with `systemctl start mosquitto`). A machine that
# already has a policy-rc.d, or the package, is left as it is.
policy=/usr/sbin/policy-rc.d
policy_mark="written by Starling's deploy/setup.sh"
remove_policy() {
    if grep -qs "$policy_mark" "$policy"; then rm -f "$policy"; fi
}
mosquitto_status=$(dpkg-query -W -f='${Status}' mosquitto 2>/dev/null || true)
if [ "${mosquitto_status%ok installed}" = "$mosquitto_status" ] && [ ! -e "$policy" ]; then
    trap remove_policy EXIT
    printf '%s\n' '#!/bin/sh' \
        "# $policy_mark for the length of one apt-get install; removed after it." \
        '# Denies the start of the newly installed mosquitto service (101), allows the rest.' \
        'case "$1" in mosquitto|mosquitto.service) exit 101 ;; esac' \
        'exit 0' > "$policy"
    chmod 755 "$policy"
fi

apt-get update -q
apt-get install -y -q --no-install-recommends \
    build-essential pkg-config ninja-build git ca-certificates \
    libuv1-dev libssl-dev liblmdb-dev libcriterion-dev \
    libcjson-dev libhttp-parser-dev libwslay-dev \
    mosquitto mosquitto-clients python3-paho-mqtt python3-pytest node-mqtt \
    python3-matplotlib clang libclang-rt-14-dev lmdb-utils procps iproute2 psmisc iptables debootstrap \
    chromium chromium-driver python3-selenium faketime
apt-get install -y -q --no-install-recommends -t bookworm-backports meson libraft-dev
remove_policy

raft_version=$(pkg-config --modversion raft 2>/dev/null || echo none)
case "$raft_version" in
    0.2[2-9]*|0.[3-9]*|[1-9]*) ;;
    *) echo "setup.sh: libraft $raft_version installed; 0.22 or later from bookworm-backports is required" >&2; exit 1 ;;
esac
touch "$stamp"
