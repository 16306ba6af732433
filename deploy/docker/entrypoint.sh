#!/bin/sh
# Entrypoint of the Starling image. Writes this node's configuration (the
# image's /etc/starling/starling.conf, then node_id and the secrets taken from
# the environment, so that they appear neither in the image nor on
# starlingd's command line) and execs starlingd, which becomes PID 1 and
# stops cleanly on SIGTERM. Arguments go to starlingd (e.g. -v).
#   STARLING_NODE_ID          this node's id (1..65535), default 1
#   STARLING_CLUSTER_SECRET   cluster_secret, the same on every node
#   STARLING_ADMIN_TOKEN      admin_token (required: the admin API listens
#                             beyond loopback, on the container's addresses)
# With /etc/starling/certs/nodeN.crt, nodeN.key and ca.crt present (N the
# node id), the peer links run TLS.
# `starling-entrypoint health` is the image's HEALTHCHECK: healthy when the
# admin API answers and the node sees a leader.
set -eu

conf=/etc/starling/starling.conf
admin_port=18083
export STARLINGCTL_URL="http://127.0.0.1:$admin_port"
export STARLINGCTL_TOKEN="${STARLING_ADMIN_TOKEN:-}"

if [ "${1:-}" = health ]; then
    starlingctl --timeout 2 cluster status | grep -q '^leader: *node '
    exit
fi

case "${STARLING_NODE_ID:-1}" in
    ''|*[!0-9]*) echo "starling-entrypoint: STARLING_NODE_ID must be a number" >&2; exit 2 ;;
esac
for v in "${STARLING_CLUSTER_SECRET:-}" "${STARLING_ADMIN_TOKEN:-}"; do
    case "$v" in *[!A-Za-z0-9._~+/=-]*)
        echo "starling-entrypoint: secrets may only hold letters, digits and ._~+/=-" >&2; exit 2 ;;
    esac
done

umask 077
run=$(mktemp -d /tmp/starling.XXXXXX)
{
    cat "$conf"
    echo
    echo "# from the container's environment (starling-entrypoint)"
    echo "node_id ${STARLING_NODE_ID:-1}"
    [ -z "${STARLING_CLUSTER_SECRET:-}" ] || echo "cluster_secret \"$STARLING_CLUSTER_SECRET\""
    [ -z "${STARLING_ADMIN_TOKEN:-}" ] || echo "admin_token \"$STARLING_ADMIN_TOKEN\""
    # TLS peer links when cluster-up.sh mounted certificates (deploy/make-certs.sh)
    certs=/etc/starling/certs
    id=${STARLING_NODE_ID:-1}
    if [ -f "$certs/node$id.crt" ] && [ -f "$certs/node$id.key" ] && [ -f "$certs/ca.crt" ]; then
        echo "cluster_certfile $certs/node$id.crt"
        echo "cluster_keyfile $certs/node$id.key"
        echo "cluster_cafile $certs/ca.crt"
    fi
} > "$run/starling.conf"
exec starlingd -c "$run/starling.conf" "$@"
