#!/usr/bin/env bash
# Replication benchmarks (issue 8), against Tarantool in the same invocation where it can be:
#  - synchronous commit latency and throughput, leader + 2 replicas, quorum 2, on tarantool
#    2.6.0 and node (the client is node in both runs);
#  - failover time (kill -9 of the leader until the one other candidate is a writable
#    leader), median and p90 of ROUNDS, for replication_timeout 1 and 0.25. Debian's 2.6.0
#    has no elections: the baseline is 2.6.3's measured median (spec §4.5: 3.5 s and
#    0.95 s); node is also run with election_fast_failover = false (2.6.3's rule).
#   bash scripts/bench/raft.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-20}
seconds=${2:-5}
command -v tarantool >/dev/null || { apt-get update -qq && apt-get install -y -qq tarantool >/dev/null; }
cargo build --release -q
node=$PWD/target/release/node
tt=$(mktemp); nd=$(mktemp)
trap 'rm -f "$tt" "$nd"' EXIT
"$node" scripts/bench/synchro.lua tarantool "$seconds" >"$tt"
"$node" scripts/bench/synchro.lua "$node" "$seconds" >"$nd"
printf '%-32s %12s %12s %8s  %s\n' metric tarantool node ratio unit
paste "$tt" "$nd" | awk -F'\t' '{
    # Latency: lower is better, so the ratio is tarantool/node; throughput: node/tarantool.
    r = ($3 == "ms" || $3 == "count") ? ($5 > 0 ? $2 / $5 : 0) : $5 / $2
    printf "%-32s %12.3f %12.3f %8.2f  %s\n", $1, $2, $5, r, $3 }'
echo
printf '%-32s %12s %12s %8s  %s\n' metric 'tnt 2.6.3' node 'node/tnt' unit
for rt in 1 0.25; do
    ref=$([ "$rt" = 1 ] && echo 3.5 || echo 0.95)
    "$node" scripts/bench/failover.lua "$node" "$rt" "$rounds" true |
        awk -F'\t' -v ref="$ref" '{ printf "%-32s %12.3f %12.3f %8.2f  %s\n", $1, ref, $2, $2 / ref, $3 }'
    "$node" scripts/bench/failover.lua "$node" "$rt" "$rounds" false |
        awk -F'\t' -v ref="$ref" '{ printf "%-32s %12.3f %12.3f %8.2f  %s\n", $1 "_2.6.3rule", ref, $2, $2 / ref, $3 }'
done
