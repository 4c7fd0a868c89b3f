#!/usr/bin/env bash
# Regenerates tests/console/*.out with real Tarantool 2.6: each *.in is piped into a
# console started by a script, exactly as tests/console_golden.rs drives node.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v tarantool >/dev/null || { echo "tarantool is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "require('console').start() os.exit(0)" > "$work/con.lua"
for input in tests/console/*.in; do
    (cd "$work" && tarantool con.lua) < "$input" > "${input%.in}.out" 2>&1
done
echo "regenerated $(ls tests/console/*.out | wc -l) golden files"
