#!/usr/bin/env bash
# The relay against tarantool 2.6.0's: a tarantool replica joins a master of ROWS tuples,
# then catches up ROWS rows from its xlogs; node master, then tarantool master.
#   bash scripts/bench/relay.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=${1:-1000000}
command -v tarantool >/dev/null || { apt-get update -qq && apt-get install -y -qq tarantool >/dev/null; }
cargo build --release -q
node=$PWD/target/release/node
for master in "$node" tarantool; do
    echo "== master: $(basename "$master")"
    "$node" scripts/bench/relay.lua "$master" "$rows"
done
