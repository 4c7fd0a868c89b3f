#!/usr/bin/env bash
# Runs scripts/bench/box.lua on real Tarantool (the baseline) and on node (release build) in
# one invocation and prints a table with a ratio per metric, oriented so that >= 1.0 always
# means node is at least as good: node/tarantool for rates (higher is better), and
# tarantool/node for memory and recovery time (lower is better). Rows marked `info` are
# each runtime's own accounting (box.slab.info), not comparable: no ratio.
#
# The two runtimes run alternately BOX_BENCH_REPEAT times (default 3) and each figure is
# the best of its runs (highest rate, lowest bytes/ms): on a shared machine a single run of
# the WAL round trip cases varies by 3x with the load of other processes.
#   bash scripts/bench/box.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
repeat=${BOX_BENCH_REPEAT:-3}
if ! command -v tarantool >/dev/null; then
    apt-get update -qq && apt-get install -y -qq tarantool >/dev/null
fi
cargo build --release -q
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/tarantool"
: >"$tmp/node"
for i in $(seq "$repeat"); do
    tarantool scripts/bench/box.lua >>"$tmp/tarantool" 2>"$tmp/tarantool.err.$i" || true
    ./target/release/node scripts/bench/box.lua >>"$tmp/node" 2>"$tmp/node.err.$i" || true
done
echo "best of $repeat runs each; ratio >= 1.0: node at least as good (rates node/tarantool; bytes and ms tarantool/node)"
printf '%-32s %14s %14s %8s  %s\n' metric tarantool node ratio unit
awk -F'\t' '
    function lower_better(u) { return u == "bytes" || u == "ms" }
    function better(u, a, b) { return lower_better(u) ? a < b : a > b }
    {
        file = (FILENAME == ARGV[1]) ? 1 : 2
        m = $1; v = $2 + 0
        if (!(m in unit)) { order[++n] = m; unit[m] = $3 }
        if (!((file, m) in best) || better($3, v, best[file, m])) best[file, m] = v
    }
    END {
        for (i = 1; i <= n; i++) {
            m = order[i]; u = unit[m]
            t = "-"; v = "-"; r = "-"
            if ((1, m) in best) t = sprintf("%.1f", best[1, m])
            if ((2, m) in best) v = sprintf("%.1f", best[2, m])
            if (t != "-" && v != "-" && u !~ /info/ && best[1, m] > 0 && best[2, m] > 0)
                r = sprintf("%.2f", lower_better(u) ? best[1, m] / best[2, m] : best[2, m] / best[1, m])
            printf "%-32s %14s %14s %8s  %s\n", m, t, v, r, u
        }
    }' "$tmp/tarantool" "$tmp/node"
# A case that failed leaves its metrics out: show that runtime's stderr.
for rt in tarantool node; do
    if [ "$(wc -l <"$tmp/$rt")" -lt $((12 * repeat)) ]; then
        echo "--- $rt: some cases printed nothing; stderr of the first run:"
        head -30 "$tmp/$rt.err.1"
    fi
done
