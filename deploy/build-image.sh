#!/bin/sh
# Builds the sealwatch agent image with docker or podman (whichever is found first;
# CONTAINER_ENGINE=podman to choose), from the repository root whatever the current directory.
#
#   deploy/build-image.sh [IMAGE[:TAG]] [extra build options...]
#   e.g. deploy/build-image.sh 123456789012.dkr.ecr.eu-west-1.amazonaws.com/sealwatch:0.1.0
#   then `docker push` (or `podman push`) that name.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
image=${1:-sealwatch:dev}
if [ $# -gt 0 ]; then
    shift
fi

engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
    for candidate in docker podman; do
        if command -v "$candidate" >/dev/null 2>&1; then
            engine=$candidate
            break
        fi
    done
fi
if [ -z "$engine" ]; then
    echo "build-image.sh: neither docker nor podman found (set CONTAINER_ENGINE)" >&2
    exit 1
fi

echo "build-image.sh: $engine build -t $image -f deploy/image/Containerfile $*" >&2
exec "$engine" build -t "$image" -f "$root/deploy/image/Containerfile" "$@" "$root"
