"""Reference for benches/inpaint.rs: OpenCV's Telea on the same inputs and masks.

Reads a JSON list of {"image", "mask", "out", "radius"} on stdin, runs cv2.inpaint(INPAINT_TELEA)
on each (median of --repeat timed runs, after one warm-up), writes the result PNG to "out" and
prints a JSON list of seconds per case. Single-threaded, as OpenCV's Telea is.
"""
import json
import sys
import time

import cv2
import numpy as np

cv2.setNumThreads(1)
repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
cases = json.load(sys.stdin)
seconds = []
for case in cases:
    image = cv2.imread(case["image"], cv2.IMREAD_COLOR)
    mask = (cv2.imread(case["mask"], cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8) * 255
    out = cv2.inpaint(image, mask, case["radius"], cv2.INPAINT_TELEA)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = cv2.inpaint(image, mask, case["radius"], cv2.INPAINT_TELEA)
        times.append(time.perf_counter() - start)
    cv2.imwrite(case["out"], out)
    seconds.append(sorted(times)[len(times) // 2])
json.dump(seconds, sys.stdout)
