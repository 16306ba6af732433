#!/usr/bin/env bash
# Builds the local Debian base image that deploy/docker/Dockerfile starts
# from. The machine has no image registry, so nothing can be pulled: the root
# filesystem comes from `debootstrap --variant=minbase bookworm` against the
# Debian mirror that this machine's apt sources already use (never a host
# name written into the repository), and is turned into an image with
# `docker import`. The image's apt sources list bookworm and bookworm-backports
# from that same mirror (libraft 0.22 and meson 1.7 come from backports).
#
# Idempotent: does nothing when the image exists (STARLING_BASE_FORCE=1
# rebuilds). Needs root (debootstrap; installed when missing).
# Usage: deploy/docker/base-image.sh [IMAGE]   (default starling/debian-base:bookworm)
set -euo pipefail

image=${1:-${STARLING_BASE_IMAGE:-starling/debian-base:bookworm}}
here=$(cd "$(dirname "$0")" && pwd)

if [ "${STARLING_BASE_FORCE:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "base-image.sh: $image exists"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "base-image.sh: debootstrap needs root" >&2; exit 1; }
# deploy/setup.sh installs it; a machine set up before it did gets it here.
if ! command -v debootstrap >/dev/null; then
    echo "base-image.sh: installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null || {
        echo "base-image.sh: debootstrap is missing and could not be installed (apt-get install debootstrap)" >&2
        exit 1; }
fi

# shellcheck source=deploy/apt-mirror.sh
. "$here/../apt-mirror.sh"
mirror=$(starling_debian_mirror) || {
    echo "base-image.sh: no bookworm apt source on this machine to take the mirror from" >&2; exit 1; }

root=$(mktemp -d /var/tmp/starling-rootfs.XXXXXX)
cleanup() { rm -rf --one-file-system "$root"; }
trap cleanup EXIT

echo "base-image.sh: debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $mirror bookworm-backports main
SOURCES
# A container image: no man pages or documentation, no package caches, no
# recommends (the same trims Debian's own docker images make).
cat > "$root/etc/apt/apt.conf.d/90starling-container" <<'APTCONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APTCONF
cat > "$root/etc/dpkg/dpkg.cfg.d/90starling-nodoc" <<'DPKGCFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKGCFG
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* \
       "$root/usr/share/man/"* "$root/usr/share/doc/"*/changelog*
# debootstrap leaves the host's resolv.conf and hostname: Docker provides its own.
: > "$root/etc/resolv.conf"
: > "$root/etc/hostname"

tar --numeric-owner -C "$root" -c . |
    docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$image" >/dev/null
echo "base-image.sh: built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
