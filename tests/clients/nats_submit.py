"""A NATS client of unmark written in Python (nats-py), as docs/nats.md describes it.

usage: nats_submit.py NATS_URL IMAGE MASK BLOB_DIR

Submits a bad job (expects a rejection), then a good one; follows its events on the
UNMARK_EVENTS stream, reads the result from the blob folder, and prints "ok WxH".
"""
import asyncio
import base64
import json
import os
import struct
import sys

import nats


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


async def main(url, image_path, mask_path, blob_dir):
    nc = await nats.connect(url)
    image = open(image_path, "rb").read()
    mask = open(mask_path, "rb").read()
    b64 = lambda b: base64.b64encode(b).decode()

    bad = {"pipeline": "remove-watermark", "params": {"radius": 99},
           "image": {"base64": b64(image)}, "mask": {"base64": b64(mask)}}
    reply = json.loads((await nc.request("unmark.jobs.submit", json.dumps(bad).encode(), timeout=10)).data)
    assert reply["status"] == "rejected", reply
    assert reply["reason"] == "invalid_parameter", reply
    assert "radius" in reply["message"], reply

    good = {"pipeline": "remove-watermark", "params": {"format": "png"},
            "image": {"base64": b64(image)}, "mask": {"base64": b64(mask)}}
    reply = json.loads((await nc.request("unmark.jobs.submit", json.dumps(good).encode(), timeout=10)).data)
    assert reply["status"] == "accepted", reply
    subject = reply["events_subject"]
    assert subject == "unmark.events." + reply["id"], reply

    js = nc.jetstream()
    sub = await js.subscribe(subject, ordered_consumer=True)
    kinds = []
    while True:
        msg = await sub.next_msg(timeout=60)
        event = json.loads(msg.data)
        kinds.append(event["type"])
        if event["type"] == "failed":
            raise SystemExit("job failed: %s" % event)
        if event["type"] == "succeeded":
            break
    assert kinds[0] == "accepted" and kinds.count("stage_done") == 5, kinds
    result = open(os.path.join(blob_dir, event["result"]["key"]), "rb").read()
    assert event["content_type"] == "image/png", event
    w, h = png_size(result)
    assert (w, h) == png_size(image), ((w, h), png_size(image))
    await nc.close()
    print("ok %dx%d" % (w, h))


asyncio.run(main(*sys.argv[1:5]))
