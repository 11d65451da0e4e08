#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang into build-fuzz/ (or $FUZZ_BUILD_DIR) and
# runs each for a while from its seed corpus, two at a time. Exits non-zero on any finding: the
# input is kept in build-fuzz/findings/, the fuzzer's output in build-fuzz/logs/<target>.log.
#   scripts/fuzz.sh                    every target, $FUZZ_SECONDS (default 20) seconds each
#   scripts/fuzz.sh request config     only these
#   FUZZ_SECONDS=600 FUZZ_JOBS=1 scripts/fuzz.sh raw_tx     one long run, as TESTING.md records
# New inputs the fuzzer finds go to build-fuzz/corpus/<target>/ (kept between runs, never
# committed); the seeds under tests/fuzz/<target>/ are only read.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$here/build-fuzz}"
seconds="${FUZZ_SECONDS:-20}"
jobs="${FUZZ_JOBS:-2}"
all_targets=(request batch_reply raw_tx config classify)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

# Its own build directory and compiler: GCC builds everything else.
CXX=clang++ BUILD_DIR="$build" \
    CMAKE_ARGS="-DGATEWAY_FUZZ=ON -DGATEWAY_BUILD_TESTS=OFF -DGATEWAY_WERROR=OFF ${CMAKE_ARGS:-}" \
    "$here/scripts/build.sh" "${targets[@]/#/fuzz_}"

mkdir -p "$build/logs" "$build/findings"

# Runs one target; its output goes to its log, and the log's tail to the terminal on a finding.
run() {
    local name="$1"
    local corpus="$build/corpus/$name"
    local options=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$build/findings/$name-")
    [ -f "$here/tests/fuzz/$name.dict" ] && options+=(-dict="$here/tests/fuzz/$name.dict")
    mkdir -p "$corpus"
    # The first directory receives new inputs; the seeds are read only.
    if "$build/tests/fuzz/fuzz_$name" "${options[@]}" "$corpus" "$here/tests/fuzz/$name" \
        >"$build/logs/$name.log" 2>&1; then
        echo "fuzz $name: no finding in ${seconds}s ($(grep -o 'stat::number_of_executed_units: [0-9]*' \
            "$build/logs/$name.log" | grep -o '[0-9]*$') runs)"
    else
        echo "fuzz $name: FINDING (log: $build/logs/$name.log)"
        tail -n 40 "$build/logs/$name.log"
        return 1
    fi
}

failed=0
running=0
for name in "${targets[@]}"; do
    if ((running >= jobs)); then
        wait -n || failed=$((failed + 1))
        running=$((running - 1))
    fi
    run "$name" &
    running=$((running + 1))
done
while ((running > 0)); do
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
done

# A closing line in the form test runners use: a target passes when it ran without a finding.
echo "fuzz: $((${#targets[@]} - failed)) passed, $failed failed"
((failed == 0))
