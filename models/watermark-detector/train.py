"""Trains unmark's watermark detector and writes its weights for the Rust stage.

    python3 models/watermark-detector/train.py --out models/watermark-detector/detector.bin

Reproducible: the data come from synth.py with fixed seeds, torch is seeded, and training runs
on the CPU with 2 threads. The network is deliberately small (a three-level U-Net of 3x3
convolutions, 16/32/48 channels, about 70k weights), so that the stage runs it on the CPU in
well under a second at 512 px. Its layout is described in stages/src/detect/auto.rs, which
checks every layer's shape against it.

Weights file: b"UMWD" + u32 version (2) + u32 layer count, then per layer u32 in, u32 out,
u32 kernel, u32 dilation, then out*in*k*k f32 weights ([out][in][ky][kx]) and out f32 biases,
little-endian, in the order of Detector.convs().
"""
import argparse
import json
import multiprocessing
import random
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import synth

def conv(cin, cout, dilation=1):
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)


class Detector(nn.Module):
    """Full size (16 channels) -> 1/2 (32) -> 1/4 (48, dilations 1, 2, 4) -> back up with skip
    connections (nearest-neighbour upsampling, concatenation) -> a 1x1 head. Inputs must have
    sides divisible by 4 (the stage pads by repeating the edge)."""

    def __init__(self):
        super().__init__()
        self.c1a, self.c1b = conv(3, 16), conv(16, 16)
        self.c2a, self.c2b = conv(16, 32), conv(32, 32)
        self.c3a, self.c3b, self.c3c = conv(32, 48), conv(48, 48, 2), conv(48, 48, 4)
        self.u2 = conv(48 + 32, 32)
        self.u1 = conv(32 + 16, 16)
        self.head = nn.Conv2d(16, 1, 1)

    def convs(self):
        return [self.c1a, self.c1b, self.c2a, self.c2b, self.c3a, self.c3b, self.c3c, self.u2,
                self.u1, self.head]

    def forward(self, x):
        e1 = F.relu(self.c1b(F.relu(self.c1a(x))))
        e2 = F.max_pool2d(e1, 2)
        e2 = F.relu(self.c2b(F.relu(self.c2a(e2))))
        e3 = F.max_pool2d(e2, 2)
        e3 = F.relu(self.c3c(F.relu(self.c3b(F.relu(self.c3a(e3))))))
        u2 = F.relu(self.u2(torch.cat([F.interpolate(e3, scale_factor=2, mode="nearest"), e2], 1)))
        u1 = F.relu(self.u1(torch.cat([F.interpolate(u2, scale_factor=2, mode="nearest"), e1], 1)))
        return self.head(u1)


def to_input(rgb_uint8):
    return torch.from_numpy(rgb_uint8).float().permute(0, 3, 1, 2) / 255.0 - 0.5


def save(model, path):
    convs = model.convs()
    with open(path, "wb") as f:
        f.write(b"UMWD" + struct.pack("<II", 2, len(convs)))
        for conv in convs:
            w = conv.weight.detach().numpy().astype("<f4")
            b = conv.bias.detach().numpy().astype("<f4")
            f.write(struct.pack("<IIII", w.shape[1], w.shape[0], w.shape[2], conv.dilation[0]))
            f.write(w.tobytes())
            f.write(b.tobytes())


def load(path):
    """A Detector with the weights of a file written by save()."""
    model = Detector()
    data = open(path, "rb").read()
    assert data[:4] == b"UMWD" and struct.unpack_from("<I", data, 4)[0] == 2
    at = 12
    for layer in model.convs():
        cin, cout, k, _ = struct.unpack_from("<IIII", data, at)
        at += 16
        n = cout * cin * k * k
        layer.weight.data = torch.from_numpy(np.frombuffer(data, "<f4", n, at).reshape(cout, cin, k, k).copy())
        at += 4 * n
        layer.bias.data = torch.from_numpy(np.frombuffer(data, "<f4", cout, at).copy())
        at += 4 * cout
    return model


def parity_image(width, height):
    """The fixed test image of the Rust parity test: RGB, value (7x + 13y + 29c) % 256."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((7 * x + 13 * y + 29 * c) % 256).astype(np.uint8)


def write_parity(model, path):
    """Logits of parity_image(24, 20) (sides divisible by 4, as the stage pads to), for the
    Rust port's parity test."""
    with torch.no_grad():
        logits = model(to_input(parity_image(24, 20)[None]))[0, 0].numpy()
    with open(path, "w") as f:
        json.dump({"width": 24, "height": 20, "logits": [round(float(v), 6) for v in logits.ravel()]}, f)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--samples", type=int, default=12000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--parity", help="only write the parity fixture of the weights in --out here")
    args = p.parse_args()
    if args.parity:
        write_parity(load(args.out), args.parity)
        return
    torch.manual_seed(7)
    torch.set_num_threads(2)
    started = time.time()
    chunks = [(1000 + i, 250, args.size) for i in range(args.samples // 250)]
    with multiprocessing.Pool(2) as pool:
        parts = pool.map(synth.batch_worker, chunks)
    xs = np.concatenate([p[0] for p in parts])
    ys = np.concatenate([p[1] for p in parts])
    print(f"data: {len(xs)} samples of {args.size} px, mark share {ys.mean():.3f}, "
          f"{time.time() - started:.0f} s", flush=True)
    model = Detector()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps)
    rng = np.random.default_rng(7)
    for step in range(args.steps):
        idx = rng.integers(0, len(xs), args.batch)
        x = to_input(xs[idx])
        y = torch.from_numpy(ys[idx]).float()[:, None]
        logits = model(x)
        bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(1.0))
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * y).sum() + 1) / (prob.sum() + y.sum() + 1)
        loss = bce + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} bce {bce.item():.4f} dice {dice.item():.4f} "
                  f"{time.time() - started:.0f} s", flush=True)
            save(model, args.out)
    save(model, args.out)


if __name__ == "__main__":
    random.seed(7)
    main()
