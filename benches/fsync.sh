#!/usr/bin/env bash
# What flushing blobs to disk ([blobs] fsync = true, the default) costs a synchronous request:
# two embedded servers from the same release binary, one with fsync and one without, the
# same eval case sent to each in alternating rounds; prints medians and their ratio.
#   cargo build --release && benches/fsync.sh [requests-per-round] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-30}"; rounds="${2:-3}"
bin=target/release/unmark
case=../shared/eval/cases/dev_001_astronaut_512_text_center
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
start() { # name fsync -> prints the base URL
    UNMARK_LOG=warn UNMARK_BLOBS__FSYNC="$2" "$bin" serve --bind 127.0.0.1:0 \
        --data-dir "$work/$1" > "$work/$1.out" 2> "$work/$1.err" &
    for _ in $(seq 100); do
        grep -q "listening on" "$work/$1.out" 2>/dev/null && break
        sleep 0.1
    done
    sed -n 's/^listening on //p' "$work/$1.out"
}
on=$(start on true); off=$(start off false)
send() { curl -s -o /dev/null -w "$1 %{time_total}\n" -F image=@$case/watermarked.png \
    -F mask=@$case/mask.png "$2/api/v1/remove-watermark"; }
send warm "$on" > /dev/null; send warm "$off" > /dev/null
for _ in $(seq "$rounds"); do
    for _ in $(seq "$n"); do send on "$on"; done
    for _ in $(seq "$n"); do send off "$off"; done
done > "$work/times"
python3 - "$work/times" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    t.setdefault(k, []).append(float(v) * 1000)
for k in ("on", "off"):
    print(f"fsync {k}: n={len(t[k])} median {statistics.median(t[k]):.1f} ms")
print(f"ratio on/off: {statistics.median(t['on']) / statistics.median(t['off']):.2f}")
PY
