#!/bin/sh
# Build openclaw-backup's wheel into ./wheels beside this script, for the Space's Dockerfile.
#   ./build-wheel.sh [CHECKOUT]    CHECKOUT: the openclaw-backup source (default: ../.. from here)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${1:-$here/../..}
rm -rf "$here/wheels" && mkdir -p "$here/wheels"
python3 -m pip wheel --quiet --no-deps --wheel-dir "$here/wheels" "$src"
ls "$here/wheels"
