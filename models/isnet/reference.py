#!/usr/bin/env python3
"""onnxruntime reference for unmark's ISNet parity tests and bench.

Joins the float16 ISNet that `@imgly/background-removal-data` ships as chunks, converts it to
float32 (weights upcast, the Cast nodes around Resize removed: the same network and weights
that unmark computes in float32), then for each photo applies rembg's `isnet-general-use`
preprocessing (RGB, Pillow Lanczos to 1024x1024, divide by the image's maximum, subtract the
ImageNet mean, std 1.0) and runs the model.

Writes into OUT, per photo NAME:
  NAME.input.f32   the preprocessed input, float32 [3, S, S] (little-endian, raw)
  NAME.output.f32  the model's `output` (the finest side output), float32 [S, S]
  NAME.mask.png    rembg's mask: min-max normalised, *255 truncated, Lanczos back to size
and timing.json: per photo, seconds per forward pass and per whole rembg-style run (Pillow
preprocessing, forward pass, mask back to size), the threads and the peak RSS.

usage: reference.py RESOURCES_JSON OUT [--side S] [--threads N] [--repeat R] PHOTO...
"""
import argparse
import hashlib
import json
import os
import resource
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from PIL import Image

MEAN = (0.485, 0.456, 0.406)


def join_chunks(resources, model="/models/medium"):
    index = json.load(open(resources))
    entry = index[model]
    base = os.path.dirname(resources)
    out = bytearray()
    for chunk in entry["chunks"]:
        data = open(os.path.join(base, chunk["hash"]), "rb").read()
        assert hashlib.sha256(data).hexdigest() == chunk["hash"], chunk["hash"]
        out += data
    assert len(out) == entry["size"]
    return bytes(out)


def to_float32(model):
    """The same graph in float32: upcast weights and constants, drop Cast nodes."""
    graph = model.graph
    for i, t in enumerate(graph.initializer):
        if t.data_type == onnx.TensorProto.FLOAT16:
            a = numpy_helper.to_array(t).astype(np.float32)
            graph.initializer[i].CopyFrom(numpy_helper.from_array(a, t.name))
    rename = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Cast":
            rename[node.output[0]] = node.input[0]
            continue
        for attr in node.attribute:
            if attr.t and attr.t.data_type == onnx.TensorProto.FLOAT16:
                a = numpy_helper.to_array(attr.t).astype(np.float32)
                attr.t.CopyFrom(numpy_helper.from_array(a, attr.t.name))
        keep.append(node)

    def resolve(name):
        while name in rename:
            name = rename[name]
        return name

    for node in keep:
        for j, name in enumerate(node.input):
            node.input[j] = resolve(name)
    outputs = {o.name for o in graph.output}
    for node in keep:
        for j, name in enumerate(node.output):
            pass
    # Graph outputs produced by a removed Cast: let the producer write the output name.
    for o in graph.output:
        src = resolve(o.name)
        if src != o.name:
            for node in keep:
                for j, name in enumerate(node.output):
                    if name == src:
                        node.output[j] = o.name
                for n2 in keep:
                    for k, name in enumerate(n2.input):
                        if name == src:
                            n2.input[k] = o.name
    del graph.node[:]
    graph.node.extend(keep)
    for v in list(graph.input) + list(graph.output):
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    del graph.value_info[:]
    return model


def float32_model(resources, cache):
    path = os.path.join(cache, "isnet-fp32.onnx")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        model = to_float32(onnx.load_from_string(join_chunks(resources)))
        onnx.save(model, path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def preprocess(img, side):
    im = img.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
    a = np.array(im).astype(np.float64)
    a = a / max(np.max(a), 1e-6)
    t = np.zeros((side, side, 3))
    for c in range(3):
        t[:, :, c] = (a[:, :, c] - MEAN[c]) / 1.0
    return t.transpose((2, 0, 1)).astype(np.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("resources")
    p.add_argument("out")
    p.add_argument("photos", nargs="+")
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--cache", default=None)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = float32_model(args.resources, args.cache or args.out)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name_in = session.get_inputs()[0].name
    timing = {}
    for photo in args.photos:
        stem = os.path.splitext(os.path.basename(photo))[0]
        img = Image.open(photo)
        img.load()
        forward, total = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            x = preprocess(img, args.side)
            began = time.perf_counter()
            pred = session.run(["output"], {name_in: x[None]})[0][0, 0]
            forward.append(time.perf_counter() - began)
            mi, ma = pred.min(), pred.max()
            norm = (pred - mi) / (ma - mi)
            mask = Image.fromarray((norm * 255).astype("uint8"), mode="L")
            mask = mask.resize(img.size, Image.Resampling.LANCZOS)
            total.append(time.perf_counter() - start)
        timing[stem] = {"forward": forward, "total": total}
        x.tofile(os.path.join(args.out, stem + ".input.f32"))
        pred.astype(np.float32).tofile(os.path.join(args.out, stem + ".output.f32"))
        mask.save(os.path.join(args.out, stem + ".mask.png"))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump(
        {"photos": timing, "threads": args.threads, "side": args.side, "peak_rss_kib": peak_kib},
        open(os.path.join(args.out, "timing.json"), "w"),
    )


if __name__ == "__main__":
    sys.exit(main())
