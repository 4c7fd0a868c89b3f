#!/usr/bin/env bash
# IPROTO throughput: the same load (scripts/bench/iproto_client.lua, run by real tarantool:
# net.box, 100 fibers pipelining on one connection) against a tarantool server and a node
# server (release build), each running scripts/bench/iproto_server.lua, alternately
# IPROTO_BENCH_REPEAT times (default 5); best run per figure. Ratios >= 1.0 mean node is
# at least as good: node/tarantool for requests/s, tarantool/node for p99 latency and for
# the server's CPU time per request (user + system of the whole process, all threads, read
# from /proc around each case; a shared machine disturbs it less than the rate).
#   bash scripts/bench/iproto.sh [REQUESTS] [FIBERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
requests=${1:-200000}
fibers=${2:-100}
repeat=${IPROTO_BENCH_REPEAT:-5}
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
    if ! kill -0 "$pid" 2>/dev/null; then
        # Not up (a port taken meanwhile, say): show why instead of failing on /proc.
        echo "--- $label run $i: the server exited:"; tail -5 "$dir/server.log"
        return
    fi
    local hz
    hz=$(getconf CLK_TCK)
    for case in 1 2 3 4; do
        local before after line
        before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        line=$(tarantool scripts/bench/iproto_client.lua "$port" "$requests" "$fibers" "$case" 2>"$dir/client.err") || {
            echo "--- $label run $i case $case failed:"; tail -5 "$dir/client.err"; tail -5 "$dir/server.log"; continue; }
        after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        # µs of server CPU per request (warm-up requests included in the count)
        printf '%s\t%s\n' "$line" "$(awk -v t=$((after - before)) -v hz="$hz" -v n=$((requests + 1000)) \
            'BEGIN { printf "%.3f", t / hz * 1e6 / n }')" >>"$tmp/$label"
    done
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
echo "ratio >= 1.0: node at least as good (rps node/tarantool; p99 and CPU tarantool/node)"
printf '%-22s %10s %10s %6s %9s %9s %6s %9s %9s %6s\n' case 'tnt rps' 'node rps' ratio \
    'tnt p99' 'node p99' ratio 'tnt us/r' 'node us/r' ratio
awk -F'\t' '
    function best(table, f, c, v, lower) {
        if (!((f, c) in table) || (lower ? v < table[f, c] : v > table[f, c])) table[f, c] = v
    }
    {
        f = (FILENAME == ARGV[1]) ? 1 : 2
        if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
        best(rps, f, $1, $2 + 0, 0)
        best(p99, f, $1, $3 + 0, 1)
        best(cpu, f, $1, $4 + 0, 1)
    }
    function ratio(a, b) { return b > 0 ? a / b : 0 }
    END {
        for (i = 1; i <= n; i++) {
            c = order[i]
            printf "%-22s %10.0f %10.0f %6.2f %9.3f %9.3f %6.2f %9.3f %9.3f %6.2f\n", c,
                rps[1, c], rps[2, c], ratio(rps[2, c], rps[1, c]),
                p99[1, c], p99[2, c], ratio(p99[1, c], p99[2, c]),
                cpu[1, c], cpu[2, c], ratio(cpu[1, c], cpu[2, c])
        }
    }' "$tmp/tarantool" "$tmp/node"
