#!/usr/bin/env bash
# Sets up, builds unmark (release) and runs it; with no arguments, `unmark serve`.
#   scripts/run.sh                                  serve on 127.0.0.1:8080 (embedded mode)
#   scripts/run.sh remove-watermark IN --mask M -o OUT
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --bin unmark
if [ $# -eq 0 ]; then
    set -- serve
fi
exec target/release/unmark "$@"
