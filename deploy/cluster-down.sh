#!/usr/bin/env bash
# Stops and removes the docker compose cluster that deploy/cluster-up.sh
# started (containers and networks). The nodes' data volumes are kept, so the
# next cluster-up.sh finds the same sessions and retained messages; with
# --volumes they are deleted too. The images stay (docker rmi to remove them).
# Same environment as cluster-up.sh (STARLING_PREFIX, COMPOSE_PROJECT_NAME,
# STARLING_ENV_FILE).
set -euo pipefail
dir=$(cd "$(dirname "$0")/docker" && pwd)
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-${STARLING_PREFIX:-starling}}
args=()
case "${1:-}" in
    "") ;;
    -v|--volumes) args=(--volumes) ;;
    *) echo "usage: deploy/cluster-down.sh [--volumes]" >&2; exit 2 ;;
esac
# docker-compose insists on the variables the file uses even to stop it, and
# .env may be gone: an empty env file then (the values do not matter here).
env_file=${STARLING_ENV_FILE:-$dir/.env}
[ -f "$env_file" ] || env_file=/dev/null
export STARLING_CLUSTER_SECRET=${STARLING_CLUSTER_SECRET:-unused} STARLING_ADMIN_TOKEN=${STARLING_ADMIN_TOKEN:-unused}
docker-compose --env-file "$env_file" -f "$dir/docker-compose.yml" --project-directory "$dir" down --timeout 20 "${args[@]}"
