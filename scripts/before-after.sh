#!/usr/bin/env bash
# Makes the README's picture: a dev case before and after `unmark remove-watermark`, side by
# side, as docs/images/before-after.jpg.
#   scripts/before-after.sh [CASE_ID] [OUT]
# CASE_ID is a folder of ../shared/eval/cases (default dev_028_astronaut_1024_logo_center). The
# mask is the case's exact mask; add MODE=detect to let the built-in detector find the mark.
# Uses $UNMARK_BIN, else the release build (built if missing). Needs Pillow (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
case_id="${1:-dev_028_astronaut_1024_logo_center}"
out="${2:-docs/images/before-after.jpg}"
dir="../shared/eval/cases/$case_id"
[ -d "$dir" ] || { echo "before-after: no case $dir" >&2; exit 2; }
input="$(ls "$dir"/watermarked.* | head -n 1)"
unmark="${UNMARK_BIN:-${CARGO_TARGET_DIR:-target}/release/unmark}"
[ -x "$unmark" ] || cargo build --release --locked --bin unmark
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [ "${MODE:-mask}" = detect ]; then
    "$unmark" remove-watermark "$input" -o "$tmp/clean.png"
else
    "$unmark" remove-watermark "$input" --mask "$dir/mask.png" -o "$tmp/clean.png"
fi
mkdir -p "$(dirname "$out")"
python3 - "$input" "$tmp/clean.png" "$out" <<'EOF'
import sys
from PIL import Image, ImageDraw

before, after, out = sys.argv[1:]
a, b = Image.open(before).convert("RGB"), Image.open(after).convert("RGB")
scale = min(1.0, 512 / max(a.size))
size = (round(a.width * scale), round(a.height * scale))
a, b = a.resize(size, Image.LANCZOS), b.resize(size, Image.LANCZOS)
gap = 8
canvas = Image.new("RGB", (2 * size[0] + gap, size[1]), "white")
canvas.paste(a, (0, 0))
canvas.paste(b, (size[0] + gap, 0))
draw = ImageDraw.Draw(canvas)
for x, label in ((0, "input"), (size[0] + gap, "unmark")):
    draw.rectangle((x, 0, x + 8 + 7 * len(label), 18), fill="black")
    draw.text((x + 4, 3), label, fill="white")
canvas.save(out, quality=88)
print(f"wrote {out} ({canvas.width}x{canvas.height})")
EOF
