#!/usr/bin/env bash
# Sets up, builds unmark (release) and runs it; with no arguments, `unmark serve`.
#   scripts/run.sh                                  serve on 127.0.0.1:8080 (embedded mode)
#   scripts/run.sh remove-watermark IN --mask M -o OUT
#   scripts/run.sh remove-background IN -o OUT.png
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/isnet.sh
cargo build --release --locked --bin unmark
unmark="${CARGO_TARGET_DIR:-target}/release/unmark"
# Background removal's network, converted once into the data dir.
"$unmark" models import isnet "$UNMARK_ISNET_RESOURCES" --if-missing
if [ $# -eq 0 ]; then
    set -- serve
fi
exec "$unmark" "$@"
