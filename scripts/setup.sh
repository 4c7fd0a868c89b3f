#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh machine. Safe to run again.
set -euo pipefail
need_apt=()
command -v make >/dev/null || need_apt+=(make)
command -v gcc >/dev/null || need_apt+=(gcc)
# `script` gives the console tests a terminal.
command -v script >/dev/null || need_apt+=(bsdutils)
# Real Tarantool 2.6 is a live peer in the swim interop test.
command -v tarantool >/dev/null || need_apt+=(tarantool)
# curl drives node's http.server in tests/http_curl.rs; wrk is the HTTP benchmark's load.
command -v curl >/dev/null || need_apt+=(curl)
command -v wrk >/dev/null || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}"
fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi
if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
# The Python `tarantool` connector from PyPI, for tests/iproto_clients.rs, in a virtualenv
# beside the sources.
venv="$(cd "$(dirname "$0")/.." && pwd)/.test-venv"
if ! "$venv/bin/python" -c 'import tarantool' >/dev/null 2>&1; then
    python3 -m venv "$venv" || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q 'tarantool==1.3.0'
fi
