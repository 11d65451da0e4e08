#!/usr/bin/env bash
# Installs what is needed, checks that no file includes a header of a higher layer
# (scripts/check-layers.py), builds everything and runs every test: unit tests, then integration
# tests that start the real binary in front of real anvil nodes with cast as the client. Then the
# same again in an AddressSanitizer + UndefinedBehaviorSanitizer build, without the tests labelled
# `slow` or `once` (they ran in the plain build). Then the unit tests (but two whose timing TSan's slowdown
# upsets, labelled `no-tsan`) and the integration tests labelled `tsan` under ThreadSanitizer,
# failing on any report. Last, a short fuzz pass: each libFuzzer target of tests/fuzz/ for
# $FUZZ_SECONDS (20) seconds. ctest prints the summaries.
#   scripts/test.sh            everything
#   SANITIZE=0 scripts/test.sh skip the ASan + UBSan pass
#   TSAN=0 scripts/test.sh     skip the ThreadSanitizer pass
#   FUZZ=0 scripts/test.sh     skip the fuzz pass
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/install-deps.sh"

status=0
# Each stage's heading says when it began (seconds since the start), so that a slow CI run shows
# where its time went.
stage() { echo "== $1 (at ${SECONDS} s) =="; }
stage "layer order (scripts/check-layers.py)"
{ python3 "$here/scripts/check-layers.py" --self-test &&
    python3 "$here/scripts/check-layers.py"; } || status=1
stage "build (RelWithDebInfo, -Werror)"
"$here/scripts/build.sh"
stage "tests"
(cd "$here/build" && ctest --output-on-failure -j 2 --timeout 300) || status=1

if [ "${SANITIZE:-1}" != 0 ]; then
    stage "build (AddressSanitizer + UndefinedBehaviorSanitizer; the tests and what they run)"
    # Without -Werror: GCC 12 warns falsely (maybe-uninitialized) inside Boost and libstdc++ headers
    # when sanitizers are on; the first pass already holds the code to -Werror. What no test runs
    # (intake_bench, micro_bench, tcp-forward) is not built.
    BUILD_DIR="$here/build-asan" CMAKE_ARGS="-DGATEWAY_SANITIZE=address,undefined -DGATEWAY_WERROR=OFF" \
        "$here/scripts/build.sh" unit_tests integration_tests
    stage "tests under sanitizers"
    # Nor those labelled `once` (the operator page's browser test, the streams' end to end run:
    # tests/CMakeLists.txt says why).
    (cd "$here/build-asan" && ctest --output-on-failure -j 2 --timeout 300 -LE '^(slow|once)$') \
        || status=1
fi

if [ "${TSAN:-1}" != 0 ]; then
    stage "build (ThreadSanitizer; the test programs and the gateway only)"
    # -O1 -g1 and no -Werror (CMakeLists.txt says why); the benchmarks and tools are not built.
    BUILD_DIR="$here/build-tsan" CMAKE_ARGS="-DGATEWAY_SANITIZE=thread -DGATEWAY_WERROR=OFF" \
        "$here/scripts/build.sh" unit_tests integration_tests
    stage "unit tests and integration tests labelled tsan, under ThreadSanitizer"
    # Every process started under these options, the gateways the integration tests start
    # included, stops at its first report (halt_on_error) and writes it to a file of its own in
    # $reports (log_path), where a child's stderr would be lost in its test's temporary directory.
    # Any report fails the pass. A test that fails is run once more (a test with a tight time
    # budget can miss it under TSan's slowdown on a busy machine; a report still fails the pass,
    # as its file stays), and ctest stops at the first test that fails twice.
    reports="$here/build-tsan/tsan-reports"
    rm -rf "$reports" && mkdir -p "$reports"
    tsan_options="halt_on_error=1 second_deadlock_stack=1"
    tsan_options+=" suppressions=$here/tests/tsan.supp log_path=$reports/report"
    (cd "$here/build-tsan" && TSAN_OPTIONS="$tsan_options" \
        ctest --output-on-failure -j 2 --timeout 300 --stop-on-failure --repeat until-pass:2 \
        -L '^(unit|tsan)$' -LE '^no-tsan$') || status=1
    for report in "$reports"/report.*; do
        [ -e "$report" ] || continue
        echo "== ThreadSanitizer report: $report =="
        cat "$report"
        status=1
    done
fi

if [ "${FUZZ:-1}" != 0 ]; then
    stage "fuzz (libFuzzer + ASan + UBSan, clang; ${FUZZ_SECONDS:-20} s per target)"
    "$here/scripts/fuzz.sh" || status=1
fi

if [ "$status" = 0 ]; then echo "test.sh: all test runs passed in ${SECONDS} s"; else echo "test.sh: FAILED after ${SECONDS} s"; fi
exit "$status"
