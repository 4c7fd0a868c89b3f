#!/usr/bin/env bash
# The project's test command (the README's, and what .ci/run runs): lint, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
