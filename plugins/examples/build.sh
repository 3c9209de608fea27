#!/usr/bin/env bash
# Builds every example plugin into OUT (default: plugins/examples/out):
#   C (clang --target=wasm32-wasi with wasi-libc): grayscale, blur, autolevels, threshold
#   AssemblyScript (npm package assemblyscript):   invert
# Needs clang, lld, wasi-libc and libclang-rt-dev-wasm32 (Debian), and node/npm for the
# AssemblyScript one (`scripts/setup.sh --test` installs all of them).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/out}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

for src in "$here"/c/*.c; do
    name="$(basename "$src" .c)"
    clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror \
        -nostartfiles -Wl,--no-entry -Wl,--strip-all \
        -I "$here/../include" -o "$out/$name.wasm" "$src"
done

as="$here/assemblyscript"
if [ ! -x "$as/node_modules/.bin/asc" ]; then
    npm ci --prefix "$as" --no-audit --no-fund --silent
fi
(cd "$as" && ./node_modules/.bin/asc invert.ts --outFile "$out/invert.wasm" \
    --runtime stub --optimize --use abort=)
echo "built $(ls "$out" | tr '\n' ' ')into $out"
