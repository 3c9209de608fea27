#!/usr/bin/env bash
# Sets up and runs every test: unit, integration (real `unmark serve` processes, the eval set
# in ../shared/eval), doc tests, then clippy with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
. scripts/isnet.sh
started=$(date +%s)
# The wgpu backend is built for the tests (its test runs on Mesa's lavapipe); the release build
# of scripts/run.sh leaves it out. One feature set for tests and clippy: nothing builds twice.
features="unmark/wgpu"
# lavapipe is a software rasteriser: tune cubecl's kernels minimally, not exhaustively.
export CUBECL_AUTOTUNE_LEVEL=minimal
cargo test --workspace --locked --features "$features"
cargo clippy --workspace --all-targets --locked --features "$features" -- -D warnings
echo "scripts/test.sh: all green in $(( $(date +%s) - started )) s (after setup)"
