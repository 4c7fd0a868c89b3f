#!/usr/bin/env bash
# Runs every TAP script of tests/lua on real Tarantool 2.6 (installed from Debian if
# missing), to show that the behaviour the tests pin down is Tarantool's. Not part of the
# test command. Known differences: fiber_many and the last part of fiber_sched need
# 100,000 live fibers, which Tarantool 2.6 cannot allocate; log.test.lua checks node's log
# line format, which Tarantool uses only after box.cfg.
set -uo pipefail
cd "$(dirname "$0")/../tests/lua"
command -v tarantool >/dev/null || { apt-get update -qq && apt-get install -y -qq tarantool >/dev/null; }
pass=0; fail=0
for t in *.test.lua; do
    out=$(timeout 120 tarantool "$t" 2>&1); rc=$?
    if [ $rc -eq 0 ] && ! grep -q '^not ok' <<<"$out"; then
        pass=$((pass + 1)); echo "PASS $t"
    else
        fail=$((fail + 1)); echo "FAIL $t (exit $rc, $(grep -c '^not ok' <<<"$out") failed checks)"
    fi
done
echo "tarantool: $pass passed, $fail failed"
