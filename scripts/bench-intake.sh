#!/usr/bin/env bash
# Builds and runs the intake benchmark: durable eth_sendRawTransaction intake per second through
# an in-process gateway in front of a fake node, journal on disk (fsync) and on tmpfs.
#   scripts/bench-intake.sh [intake_bench options]     e.g. --clients 1,8,32 --seconds 5
#   scripts/bench-intake.sh --postgres --replicas 1,3 --clients 48 --rounds 3
#                 also PostgreSQL, with one gateway and with three in-process on one journal
#                 (the first owns it, the others hand it what they take), medians of 3 rounds
# Builds into $BUILD_DIR (default build/). The disk runs put the journal under $TMPDIR (or /tmp):
# point TMPDIR at the disk to measure. Exit status: the benchmark's (1 when a reply was wrong).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"

BUILD_DIR="$build" "$here/scripts/build.sh" intake_bench
exec "$build/tests/intake_bench" "$@"
