#!/usr/bin/env bash
# Installs what is needed, builds, and runs chain-gateway on 127.0.0.1:8545 (admin on 9545) in
# front of a local devnet: one anvil node exposed as two RPC endpoints (node-a on 18545, node-b on
# 18546), with the SQLite store in ./data. Ctrl-C stops everything.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
scripts/install-deps.sh
scripts/build.sh chain-gateway tcp-forward

run="$here/.devnet"
mkdir -p "$run" "$here/data"
# The devnet chain starts from genesis every time, so its journal does too: transactions journaled
# for an earlier devnet would wait forever for nonces this chain has never reached.
rm -f "$here/data/gateway.db" "$here/data/gateway.db-wal" "$here/data/gateway.db-shm"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

tools/node_modules/.bin/anvil --host 127.0.0.1 --port 18540 --chain-id 31337 >"$run/anvil.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "Listening on" "$run/anvil.log" && break; sleep 0.1; done
grep -q "Listening on" "$run/anvil.log" || { echo "anvil did not start:"; cat "$run/anvil.log"; exit 1; }

build/tests/tcp-forward 18545 18540 >"$run/node-a.log" 2>&1 &
pids+=($!)
echo $! >"$run/node-a.pid"
build/tests/tcp-forward 18546 18540 >"$run/node-b.log" 2>&1 &
pids+=($!)
echo $! >"$run/node-b.pid"

cat <<INFO
devnet: anvil on 127.0.0.1:18540, exposed as node-a (127.0.0.1:18545) and node-b (127.0.0.1:18546)
gateway: JSON-RPC on http://127.0.0.1:8545, admin on http://127.0.0.1:9545 (/healthz /readyz /metrics /admin/upstreams)
try:     tools/node_modules/.bin/cast block-number --rpc-url http://127.0.0.1:8545
send:    tools/node_modules/.bin/cast send --unlocked --from 0xa0Ee7A142d267C1f36714E4a8F75612F20a79720 0x000000000000000000000000000000000000dEaD --value 1 --rpc-url http://127.0.0.1:8545
fail:    kill \$(cat .devnet/node-a.pid)      # node-b takes over; see /admin/upstreams
INFO

# The managed sender of config/gateway.yaml: anvil's dev account 9 (a published key, devnet only).
export DEVNET_SENDER_KEY=0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6
build/src/chain-gateway --config config/gateway.yaml &
gateway=$!
pids+=("$gateway")
wait "$gateway"
