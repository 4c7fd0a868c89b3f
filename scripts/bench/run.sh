#!/usr/bin/env bash
# Runs a benchmark script on real Tarantool (the baseline) and on node in one invocation
# and prints a table with node/tarantool ratios. For rates a ratio >= 1.0 means node is as
# fast or faster; for sizes (bytes) the ratio is node/tarantool, lower is better. A negative
# value (a phase that did not finish) has no ratio: n/a. With BENCH_VERBOSE=1 (which the
# scripts also read) each runtime's stderr follows the table.
#   bash scripts/bench/run.sh [scripts/bench/fibers.lua [script args...]]
set -euo pipefail
cd "$(dirname "$0")/../.."
script=${1:-scripts/bench/fibers.lua}
shift || true
if ! command -v tarantool >/dev/null; then
    apt-get update -qq && apt-get install -y -qq tarantool >/dev/null
fi
cargo build --release -q
node_out=$(mktemp); tt_out=$(mktemp); node_err=$(mktemp); tt_err=$(mktemp)
trap 'rm -f "$node_out" "$tt_out" "$node_err" "$tt_err"' EXIT
tarantool "$script" "$@" >"$tt_out" 2>"$tt_err" || true
./target/release/node "$script" "$@" >"$node_out" 2>"$node_err" || true
printf '%-28s %16s %16s %8s  %s\n' metric tarantool node ratio unit
join -t $'\t' <(awk -F'\t' '{print NR"\t"$0}' "$tt_out" | sort -t $'\t' -k1,1) \
              <(awk -F'\t' '{print NR"\t"$0}' "$node_out" | sort -t $'\t' -k1,1) |
    sort -n | awk -F'\t' '{ r = ($3 > 0 && $6 >= 0) ? sprintf("%8.2f", $6 / $3) : "     n/a";
                            printf "%-28s %16.3f %16.3f %s  %s\n", $2, $3, $6, r, $4 }'
if [ -n "${BENCH_VERBOSE:-}" ]; then
    sed 's/^/tarantool: /' "$tt_err"
    sed 's/^/node: /' "$node_err"
fi
