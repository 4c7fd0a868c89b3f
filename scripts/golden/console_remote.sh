#!/usr/bin/env bash
# Regenerates tests/console_remote/*.out with real Tarantool 2.6 serving the text console
# (tests/console_remote/server.lua), in the order tests/console_remote.rs replays them:
# - raw_*.in: bytes sent on one connection at once; .out is all the server sent back;
# - client_*.in: piped into Tarantool's own console.connect (client.lua); .out is its
#   stdout with the server address written as {addr};
# - ctl_*.in: piped into `tarantoolctl connect`; .out is its stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v tarantool >/dev/null || { echo "tarantool is not installed" >&2; exit 1; }
dir=$PWD/tests/console_remote
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
addr=127.0.0.1:$port
(cd "$work" && exec tarantool "$dir/server.lua" "$addr" >server.log 2>&1) &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do
    (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
for input in "$dir"/raw_*.in; do
    tarantool scripts/golden/console_remote_raw.lua 127.0.0.1 "$port" "$input" "${input%.in}.out"
done
for input in "$dir"/client_*.in; do
    tarantool "$dir/client.lua" "$addr" < "$input" 2>/dev/null | sed "s/$addr/{addr}/g" > "${input%.in}.out"
done
for input in "$dir"/ctl_*.in; do
    tarantoolctl connect "$addr" < "$input" 2>/dev/null > "${input%.in}.out" || true
done
echo "regenerated $(ls "$dir"/*.out | wc -l) golden files"
