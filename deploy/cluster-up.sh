#!/usr/bin/env bash
# Starts a three-node Starling cluster in docker compose and waits until it
# has a leader. Idempotent: builds the local Debian base image only when it is
# missing (deploy/docker/base-image.sh: debootstrap, needs root the first
# time), rebuilds the Starling image (cached layers: quick when the sources
# did not change), writes deploy/docker/.env with fresh secrets and
# deploy/docker/certs with the peer links' certificates when they are
# missing, and `docker-compose up -d` leaves running nodes running.
# docs/docker.md walks through the cluster; deploy/cluster-down.sh stops it.
#
# Environment (all optional): STARLING_PREFIX (container and network names,
# default starling), STARLING_IMAGE, STARLING_BASE_IMAGE, COMPOSE_PROJECT_NAME,
# STARLING_NODEn_MQTT_PORT / STARLING_NODEn_ADMIN_PORT, STARLING_ENV_FILE
# (the secrets file, default deploy/docker/.env), STARLING_CERTS_DIR (the
# peer links' certificates, default deploy/docker/certs), STARLING_UP_TIMEOUT
# (seconds to wait for a leader, default 90).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/deploy/docker
export STARLING_IMAGE=${STARLING_IMAGE:-starling/starling:dev}
export STARLING_BASE_IMAGE=${STARLING_BASE_IMAGE:-starling/debian-base:bookworm}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-${STARLING_PREFIX:-starling}}
prefix=${STARLING_PREFIX:-starling}
env_file=${STARLING_ENV_FILE:-$dir/.env}

command -v docker >/dev/null || { echo "cluster-up.sh: docker is not installed" >&2; exit 1; }
command -v docker-compose >/dev/null || { echo "cluster-up.sh: docker-compose is not installed" >&2; exit 1; }

"$dir/base-image.sh" "$STARLING_BASE_IMAGE"

echo "cluster-up.sh: building $STARLING_IMAGE"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
docker build -f "$dir/Dockerfile" --build-arg "BASE_IMAGE=$STARLING_BASE_IMAGE" \
    -t "$STARLING_IMAGE" "$root" >"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }

if [ ! -f "$env_file" ]; then
    rand() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
    (   # umask for this file only: make-certs.sh below needs the usual one
        umask 077
        {
            echo "# Written by deploy/cluster-up.sh (see .env.example). Not committed."
            echo "STARLING_CLUSTER_SECRET=$(rand)"
            echo "STARLING_ADMIN_TOKEN=$(rand)"
        } > "$env_file"
    )
    echo "cluster-up.sh: wrote $env_file with a new cluster secret and admin token"
fi
# TLS peer links: a CA and node1..3 certificates (deploy/make-certs.sh), made
# once and mounted read-only; the keys belong to the image's user (uid 10001).
certs=${STARLING_CERTS_DIR:-$dir/certs}
export STARLING_CERTS_DIR=$certs
if [ ! -f "$certs/ca.crt" ] || [ ! -f "$certs/node3.key" ]; then
    STARLING_CERT_NODES=3 "$root/deploy/make-certs.sh" "$certs" >/dev/null
    echo "cluster-up.sh: made the peer links' CA and certificates in $certs"
fi
# The containers' user reads the directory and the certificates (the CA key
# stays root's, 0600).
[ "$(stat -c %a "$certs")" = 755 ] || chmod 0755 "$certs"
for n in 1 2 3; do
    if [ "$(stat -c %u "$certs/node$n.key")" != 10001 ]; then
        chown 10001:10001 "$certs/node$n.key" && chmod 0400 "$certs/node$n.key" || {
            echo "cluster-up.sh: $certs/node$n.key must belong to uid 10001 (the containers' user): run once as root" >&2
            exit 1; }
    fi
done

# The token, for starlingctl below and for the lines printed at the end.
token=$(sed -n 's/^STARLING_ADMIN_TOKEN=//p' "$env_file" | tail -n 1)
export STARLING_ADMIN_TOKEN=${STARLING_ADMIN_TOKEN:-$token}

compose() { docker-compose --env-file "$env_file" -f "$dir/docker-compose.yml" --project-directory "$dir" "$@"; }
compose up -d --no-build

# Ready = every node sees the same leader (asked through starlingctl inside
# the containers, which need nothing on the host).
deadline=$((SECONDS + ${STARLING_UP_TIMEOUT:-90}))
while :; do
    leaders=""
    for n in 1 2 3; do
        l=$(docker exec "$prefix-node$n" starlingctl --timeout 2 cluster status 2>/dev/null |
            sed -n 's/^leader: *node \([0-9]*\)$/\1/p' || true)
        leaders="$leaders ${l:-none}"
    done
    set -- $leaders
    if [ "$1" != none ] && [ "$1" = "$2" ] && [ "$2" = "$3" ]; then
        leader=$1
        break
    fi
    if [ $SECONDS -ge $deadline ]; then
        echo "cluster-up.sh: no common leader after ${STARLING_UP_TIMEOUT:-90} s (nodes see:$leaders)" >&2
        compose ps >&2
        for n in 1 2 3; do echo "--- $prefix-node$n" >&2; docker logs --tail 15 "$prefix-node$n" >&2 || true; done
        exit 1
    fi
    sleep 1
done

port() { local v="STARLING_NODE$1_$2_PORT"; echo "${!v:-$3}"; }
cat <<MSG
cluster-up.sh: three-node cluster up, leader node $leader
  MQTT      node1 127.0.0.1:$(port 1 MQTT 1883)   node2 127.0.0.1:$(port 2 MQTT 1884)   node3 127.0.0.1:$(port 3 MQTT 1885)
  admin API node1 127.0.0.1:$(port 1 ADMIN 18083)  node2 127.0.0.1:$(port 2 ADMIN 18084)  node3 127.0.0.1:$(port 3 ADMIN 18085)
  try:      mosquitto_sub -h 127.0.0.1 -p $(port 1 MQTT 1883) -t 'demo/#' -v &
            mosquitto_pub -h 127.0.0.1 -p $(port 3 MQTT 1885) -t demo/hello -m hi
  status:   docker exec $prefix-node1 starlingctl cluster status
  walkthrough: docs/docker.md; stop: deploy/cluster-down.sh [--volumes]
MSG
