#!/usr/bin/env bash
# Configures (once) and builds chain-gateway with its tests into build/ (or $BUILD_DIR).
#   scripts/build.sh [ninja targets...]      no targets: everything
# Extra CMake options can be passed in $CMAKE_ARGS, e.g. CMAKE_ARGS=-DGATEWAY_SANITIZE=address,undefined.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"
jobs="${JOBS:-2}"

if [ ! -f "$build/build.ninja" ]; then
    # shellcheck disable=SC2086
    cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGATEWAY_WERROR=ON ${CMAKE_ARGS:-}
fi
ninja -C "$build" -j "$jobs" "$@"
