#!/usr/bin/env bash
# The swim benchmark for N = 10, 50, 100, 200 (or the Ns given): real Tarantool and node
# in one invocation, with node/tarantool ratios. Times and CPU: lower is better, so a ratio
# of 0.5 means node needs half of what Tarantool needs; -1 means the phase did not finish
# within SWIM_BENCH_LIMIT seconds (default 120).
#   bash scripts/bench/swim.sh [N ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ns=("$@")
[ ${#ns[@]} -gt 0 ] || ns=(10 50 100 200)
for n in "${ns[@]}"; do
    bash scripts/bench/run.sh scripts/bench/swim.lua "$n"
    echo
done
