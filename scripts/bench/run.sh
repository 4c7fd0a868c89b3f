#!/usr/bin/env bash
# Runs a benchmark script on real Tarantool (the baseline) and on node in one invocation
# and prints a table with node/tarantool ratios. For rates a ratio >= 1.0 means node is as
# fast or faster; for sizes (bytes) the ratio is node/tarantool, lower is better. A negative
# value (a phase that did not finish) has no ratio: n/a. With BENCH_VERBOSE=1 (which the
# scripts also read) each runtime's stderr follows the table.
# BENCH_REPEAT=R (default 1) runs the two R times, taking turns, and prints each metric's
# median over the runs where it finished (the lower middle one for an even count; -1 if it
# never did), with each run's values below the table: the machine's background load drifts
# over minutes, and turns spread it over both runtimes.
# BENCH_BASELINE=COMMAND (default tarantool) runs another baseline, such as an older node
# build, to see what a change did.
#   bash scripts/bench/run.sh [scripts/bench/fibers.lua [script args...]]
set -euo pipefail
cd "$(dirname "$0")/../.."
script=${1:-scripts/bench/fibers.lua}
shift || true
repeat=${BENCH_REPEAT:-1}
baseline=${BENCH_BASELINE:-tarantool}
label=$(basename "$baseline")
if [ "$baseline" = tarantool ] && ! command -v tarantool >/dev/null; then
    apt-get update -qq && apt-get install -y -qq tarantool >/dev/null
fi
cargo build --release -q
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for r in $(seq "$repeat"); do
    "$baseline" "$script" "$@" >"$dir/tt.$r" 2>"$dir/tt_err.$r" || true
    ./target/release/node "$script" "$@" >"$dir/node.$r" 2>"$dir/node_err.$r" || true
done
# One runtime's `name<TAB>median<TAB>unit` lines, in the script's order, from its R runs.
medians() {
    awk -F'\t' '
        { if (!(($1) in seen)) { seen[$1] = 1; order[++n] = $1; unit[$1] = $3 }
          k = ++count[$1]; v[$1, k] = $2 }
        END {
            for (i = 1; i <= n; i++) {
                name = order[i]; m = count[name]
                # The runs where the phase finished (not negative), sorted; if none did, -1.
                k = 0
                for (a = 1; a <= m; a++) if (v[name, a] >= 0) s[++k] = v[name, a]
                for (a = 2; a <= k; a++) {
                    x = s[a]; b = a - 1
                    while (b >= 1 && s[b] > x) { s[b + 1] = s[b]; b-- }
                    s[b + 1] = x
                }
                printf "%s\t%s\t%s\n", name, k ? s[int((k + 1) / 2)] : -1, unit[name]
            }
        }' "$@"
}
medians "$dir"/tt.[0-9]* >"$dir/tt"
medians "$dir"/node.[0-9]* >"$dir/node"
printf '%-28s %16s %16s %8s  %s\n' metric "$label" node ratio unit
join -t $'\t' <(awk -F'\t' '{print NR"\t"$0}' "$dir/tt" | sort -t $'\t' -k1,1) \
              <(awk -F'\t' '{print NR"\t"$0}' "$dir/node" | sort -t $'\t' -k1,1) |
    sort -n | awk -F'\t' '{ r = ($3 > 0 && $6 >= 0) ? sprintf("%8.2f", $6 / $3) : "     n/a";
                            printf "%-28s %16.3f %16.3f %s  %s\n", $2, $3, $6, r, $4 }'
if [ "$repeat" -gt 1 ]; then
    echo "(medians of $repeat runs each, taking turns; each run's values:)"
    for r in $(seq "$repeat"); do
        paste <(cut -f1,2 "$dir/tt.$r") <(cut -f2 "$dir/node.$r") |
            awk -F'\t' -v r="$r" '{ printf "  run %d  %-28s %10.3f %10.3f\n", r, $1, $2, $3 }'
    done
fi
if [ -n "${BENCH_VERBOSE:-}" ]; then
    for r in $(seq "$repeat"); do
        sed "s|^|$label (run $r): |" "$dir/tt_err.$r"
        sed "s/^/node (run $r): /" "$dir/node_err.$r"
    done
fi
