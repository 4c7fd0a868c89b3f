#!/usr/bin/env bash
# The swim benchmark for N = 10, 50, 100, 200 (or the Ns given): real Tarantool and node
# in one invocation, with node/tarantool ratios. Times and CPU: lower is better, so a ratio
# of 0.5 means node needs half of what Tarantool needs; -1 means the phase did not finish
# within SWIM_BENCH_LIMIT seconds (default 120). Each N runs 3 times, the two runtimes taking
# turns, and the table has the medians (BENCH_REPEAT=1 for one run: a single run's steady
# CPU moves by a third with the machine's background load).
#   bash scripts/bench/swim.sh [N ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ns=("$@")
[ ${#ns[@]} -gt 0 ] || ns=(10 50 100 200)
for n in "${ns[@]}"; do
    BENCH_REPEAT=${BENCH_REPEAT:-3} bash scripts/bench/run.sh scripts/bench/swim.lua "$n"
    echo
done
