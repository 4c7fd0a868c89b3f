#!/usr/bin/env bash
# IPROTO throughput: the same load (scripts/bench/iproto_client.lua, run by real tarantool:
# net.box, 100 fibers pipelining on one connection) against a tarantool server and a node
# server (release build), each running scripts/bench/iproto_server.lua, alternately
# IPROTO_BENCH_REPEAT times (default 3); best run per figure. Ratios >= 1.0 mean node is
# at least as good: node/tarantool for requests/s, tarantool/node for p99 latency.
#   bash scripts/bench/iproto.sh [REQUESTS] [FIBERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
requests=${1:-200000}
fibers=${2:-100}
repeat=${IPROTO_BENCH_REPEAT:-3}
if ! command -v tarantool >/dev/null; then
    apt-get update -qq && apt-get install -y -qq tarantool >/dev/null
fi
cargo build --release -q
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
run() { # runtime label
    local rt=$1 label=$2 dir="$tmp/$2.$i"
    mkdir -p "$dir"
    port=$((port + 1))
    "$rt" scripts/bench/iproto_server.lua "$port" "$dir" >"$dir/server.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.3
    tarantool scripts/bench/iproto_client.lua "$port" "$requests" "$fibers" >>"$tmp/$label" 2>"$dir/client.err" || {
        echo "--- $label run $i failed:"; tail -5 "$dir/client.err"; tail -5 "$dir/server.log"; }
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
: >"$tmp/tarantool"
: >"$tmp/node"
for i in $(seq "$repeat"); do
    run tarantool tarantool
    run ./target/release/node node
done
echo "$requests requests per case, $fibers client fibers, best of $repeat runs"
echo "ratio >= 1.0: node at least as good (rps node/tarantool; p99 tarantool/node)"
printf '%-22s %12s %12s %7s %12s %12s %7s\n' case 'tnt rps' 'node rps' ratio 'tnt p99 ms' 'node p99 ms' ratio
awk -F'\t' '
    {
        f = (FILENAME == ARGV[1]) ? 1 : 2
        if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
        if (!((f, $1) in rps) || $2 + 0 > rps[f, $1]) rps[f, $1] = $2 + 0
        if (!((f, $1) in p99) || $3 + 0 < p99[f, $1]) p99[f, $1] = $3 + 0
    }
    END {
        for (i = 1; i <= n; i++) {
            c = order[i]
            r1 = (rps[1, c] > 0) ? rps[2, c] / rps[1, c] : 0
            r2 = (p99[2, c] > 0) ? p99[1, c] / p99[2, c] : 0
            printf "%-22s %12.0f %12.0f %7.2f %12.3f %12.3f %7.2f\n", c, rps[1, c], rps[2, c], r1, p99[1, c], p99[2, c], r2
        }
    }' "$tmp/tarantool" "$tmp/node"
