#!/usr/bin/env bash
# The simulator benchmark (examples/swim_sim_bench.rs): rounds for one event to reach a fully
# joined cluster against log2 N (the SWIM paper's O(log N)), the first rounds of a
# 10,000-member join, rounds for N members to join through one seed, and the simulator's speed
# in member-rounds per second. Deterministic in rounds for a given SIM_SEED (default 1);
# the speed columns depend on the machine. Peak memory about 7.3 GB (the 10,000-member mesh;
# SWIM_SIM_MAX_GB=4 skips it).
#   bash scripts/bench/swim-sim.sh [--events N,N,..] [--join N,N,..] [--large N] [--large-rounds R]
#                                  [--detect N,N,..] [--false-deaths SEEDS]
#   A list that is not a number (`--events none`) skips that table: the detection table
#   alone is `--events none --join none --large none --detect 100`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q --example swim_sim_bench
./target/release/examples/swim_sim_bench "$@"
