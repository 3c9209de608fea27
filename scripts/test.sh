#!/usr/bin/env bash
# Sets up and runs every test: unit, integration (real `unmark serve` processes, the eval set
# in ../shared/eval), doc tests, then clippy with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
. scripts/isnet.sh
started=$(date +%s)
cargo test --workspace --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "scripts/test.sh: all green in $(( $(date +%s) - started )) s (after setup)"
