#!/usr/bin/env bash
# Two-phase commit: the time of one committed change (POST /config to instance 1 until its
# answer), median and 90th percentile of `rounds` (20) changes, for clusters of 4 and 16
# local instances started by scripts/twophase/cluster.sh. Two changes: every instance moves
# to another port (all N are participants), and a single instance moves (one participant;
# the coordinator still asks the other N-1 for their ports). Each participant writes and
# fsyncs its prepared state and its outcome, the coordinator its log (wal_mode 'fsync',
# the topology default), so the figures include 2 + 3 fsyncs on one disk; WAL_MODE=write
# leaves the fsyncs out.
#   [WAL_MODE=write] bash scripts/bench/twophase.sh [rounds] [sizes...]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-20}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(4 16)
cargo build --release -q --bin node
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
base=$(mktemp -d /tmp/twophase-bench.XXXXXX)
dirs=()
cleanup() {
    for d in "${dirs[@]}"; do TWOPHASE_DIR="$d" bash scripts/twophase/cluster.sh stop >/dev/null 2>&1 || true; done
    rm -rf "$base"
}
trap cleanup EXIT

# post <port> <json> -> prints seconds; fails unless committed
post() {
    local out t
    out=$(curl -s -o "$base/out.json" -w '%{http_code} %{time_total}' -X POST --data "$2" "http://127.0.0.1:$1/config")
    t=${out#* }
    if [ "${out%% *}" != 200 ]; then
        echo "change not committed: $(cat "$base/out.json")" >&2
        exit 1
    fi
    echo "$t"
}

stats() { # seconds... -> "median_ms p90_ms"
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        p = v[int(NR * 0.9 + 0.999)]
        printf "%.1f %.1f", m * 1000, p * 1000 }'
}

results=()
for n in "${sizes[@]}"; do
    dir="$base/n$n"; dirs+=("$dir")
    http=$((21000 + n * 100)); iproto=$((23000 + n * 100)); swim=$((25000 + n * 100))
    TWOPHASE_DIR="$dir" HTTP_BASE=$http IPROTO_BASE=$iproto SWIM_BASE=$swim \
        bash scripts/twophase/cluster.sh start "$n" >/dev/null
    # Every instance moves between two sets of ports: http+i-1 and http+50+i-1.
    map() { # offset -> JSON map
        local s="{" i
        for i in $(seq 1 "$n"); do s+="\"$i\": $((http + $1 + i - 1))"; [ "$i" -lt "$n" ] && s+=", "; done
        echo "$s}"
    }
    all=(); one=()
    cur=0
    for _ in $(seq 1 "$rounds"); do
        next=$((50 - cur))
        all+=("$(post $((http + cur)) "$(map $next)")")
        cur=$next
    done
    # Instance 2 alone moves back and forth (instance 1 coordinates, on its current port).
    p2=$((http + cur + 1)); alt=$((http + 90))
    for _ in $(seq 1 "$rounds"); do
        one+=("$(post $((http + cur)) "{\"2\": $alt}")")
        t=$p2; p2=$alt; alt=$t
    done
    results+=("$n $(stats "${all[@]}") $(stats "${one[@]}")")
    TWOPHASE_DIR="$dir" bash scripts/twophase/cluster.sh stop >/dev/null
done

echo
echo "One committed change, POST /config to instance 1 until its answer ($rounds changes each, wal_mode ${WAL_MODE:-fsync}):"
echo
echo "| instances | all move: median | all move: p90 | one moves: median | one moves: p90 |"
echo "|---|---|---|---|---|"
for r in "${results[@]}"; do
    read -r n am ap om op <<<"$r"
    echo "| $n | $am ms | $ap ms | $om ms | $op ms |"
done
