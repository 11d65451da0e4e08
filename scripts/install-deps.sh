#!/usr/bin/env bash
# Installs everything chain-gateway needs to build, run and test, on Debian 12, as root.
# Used by the README's two commands, by .ci/run (through scripts/test.sh) and by the Dockerfile.
# Idempotent: a second run installs nothing and takes a few seconds.
#   scripts/install-deps.sh               build, run and test (the tests' tools from npm too)
#   scripts/install-deps.sh --build       what building the binary needs, nothing for the tests
#                                         (the Dockerfile's build stage)
#   scripts/install-deps.sh [--build] --print
#                                         the Debian packages it would see to, one a line; installs
#                                         nothing
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_only=0
print_only=0
for arg in "$@"; do
    case "$arg" in
        --build) build_only=1 ;;
        --print) print_only=1 ;;
        *) echo "install-deps: unknown argument $arg (--build, --print)" >&2; exit 2 ;;
    esac
done

# Build and runtime libraries. Boost 1.81 explicitly: libboost-all-dev is 1.74 on Debian 12,
# and libboost1.81-all-dev does not pull in Boost.JSON and Boost.URL.
packages=(
    build-essential cmake ninja-build ccache pkg-config git ca-certificates curl
    libboost1.81-all-dev libboost-json1.81-dev libboost-url1.81-dev
    libssl-dev libyaml-cpp-dev libspdlog-dev libfmt-dev prometheus-cpp-dev
    libsqlite3-dev libpq-dev libsecp256k1-dev zlib1g-dev
    # The chain-gateway binary's allocator (GATEWAY_MALLOC).
    libjemalloc-dev
)
# The tests' own: not in the image.
test_packages=(
    googletest libgtest-dev libgmock-dev
    # tests/bench/micro.cpp (microbenchmarks, built with the tests); wrk, the bench's second
    # driver (tests/bench/wrk.lua, whose test runs it).
    libbenchmark-dev wrk
    # The ThreadSanitizer pass: GCC 12's TSan runtime (build-essential pulls it in already).
    libtsan2
    # The fuzz pass (scripts/fuzz.sh): clang 14 and its runtimes (libFuzzer, ASan, UBSan).
    clang libclang-rt-14-dev
    # scripts/check-layers.py (the include order between folders), tests/deploy/check_image.py.
    python3
    # The PostgreSQL tests (tests/support/postgres_server.hpp): a throwaway server of their own,
    # initdb and pg_ctl as the postgres user, never the system service.
    postgresql-15
    # promtool, for the alert rules of deploy/prometheus (check and unit tests).
    prometheus
    # tools/helm-render, which renders helm/chain-gateway for its test (Debian has no helm):
    # Go, sprig and the YAML and JSON Schema libraries Helm itself uses, in GOPATH mode.
    golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev
    golang-github-xeipuuv-gojsonschema-dev
    # The operator page's test (tests/js/operator_page.cjs): Debian's Chromium, driven by
    # playwright-core from npm (which cannot download a browser of its own here).
    chromium
)
if [ "$build_only" = 0 ]; then
    packages+=("${test_packages[@]}")
    # Node.js and npm fetch the pinned anvil and cast binaries; an existing Node.js (from any
    # source) is kept.
    command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
fi
if [ "$print_only" = 1 ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# anvil, cast, ethers and playwright-core, versions pinned in tools/package.json and tools/package-lock.json.
if [ "$build_only" = 1 ]; then
    echo "install-deps: ok (build only)"
    exit 0
fi
if [ ! -x "$here/tools/node_modules/.bin/anvil" ] || [ ! -x "$here/tools/node_modules/.bin/cast" ] \
    || ! cmp -s "$here/tools/package-lock.json" "$here/tools/node_modules/.installed-lock.json"; then
    echo "install-deps: installing anvil, cast, ethers and playwright-core from npm (pinned)"
    (cd "$here/tools" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$here/tools/package-lock.json" "$here/tools/node_modules/.installed-lock.json"
fi
echo "install-deps: ok"
