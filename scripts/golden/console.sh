#!/usr/bin/env bash
# Regenerates tests/console/*.out with real Tarantool 2.6: each *.in is piped into a
# console started by a script, exactly as tests/console_golden.rs drives node.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v tarantool >/dev/null || { echo "tarantool is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for input in tests/console/*.in; do
    # A directory per case: cases that call box.cfg{} leave files behind.
    case_dir="$work/$(basename "${input%.in}")"
    mkdir -p "$case_dir"
    echo "require('console').start() os.exit(0)" > "$case_dir/con.lua"
    (cd "$case_dir" && tarantool con.lua) < "$input" > "${input%.in}.out" 2>&1
done
echo "regenerated $(ls tests/console/*.out | wc -l) golden files"
