"""Trains unmark's watermark detector and writes its weights for the Rust stage.

    python3 train.py --out detector.bin --warm detector-v2.bin --size 192 --steps 5000 ...

(the exact commands are in README.md). Reproducible: the data come from synth.py with fixed
seeds, torch is seeded, and training runs on the CPU with 2 threads. The network is
deliberately small (a four-level U-Net of 3x3 convolutions, 16/32/48/64 channels, about 250k
weights), so that the stage runs it on the CPU in about a second at 512 px. It starts from the
weights of the previous, three-level network (`detector-v2.bin`, which it contains exactly; see
warm_start); a further round starts from a version 3 file (`--init`) and draws new samples
(`--seed`). Its layout is described in models/src/detector.rs, which checks every layer's
shape against it.

Weights file: b"UMWD" + u32 version (3; 2 for the three-level network) + u32 layer count, then
per layer u32 in, u32 out, u32 kernel, u32 dilation, then out*in*k*k f32 weights
([out][in][ky][kx]) and out f32 biases, little-endian, in the order of Detector.convs().
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

VERSION = 3


def conv(cin, cout, dilation=1):
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)


class Detector(nn.Module):
    """A four-level U-Net: full size (16 channels) -> 1/2 (32) -> 1/4 (48, dilations 1, 2,
    4) -> 1/8 (64, dilations 1, 2, 4), then back up with skip connections (nearest-neighbour
    upsampling, concatenation, one convolution per level) and a 1x1 head. The 1/8 level sees
    about 150 px around each pixel, so the inside of a large logo is judged with its outline
    in view. Inputs must have sides divisible by 8 (the stage pads by repeating the edge).

    Up to `u3` exclusive it is the three-level network of version 2 (file version 2, the
    weights before this one), which `warm_start` copies in: training starts where that one
    ended, with the 1/8 level adding to it."""

    def __init__(self):
        super().__init__()
        self.c1a, self.c1b = conv(3, 16), conv(16, 16)
        self.c2a, self.c2b = conv(16, 32), conv(32, 32)
        self.c3a, self.c3b, self.c3c = conv(32, 48), conv(48, 48, 2), conv(48, 48, 4)
        self.c4a, self.c4b, self.c4c = conv(48, 64), conv(64, 64, 2), conv(64, 64, 4)
        self.u3 = conv(64 + 48, 48)
        self.u2 = conv(48 + 32, 32)
        self.u1 = conv(32 + 16, 16)
        self.head = nn.Conv2d(16, 1, 1)

    def convs(self):
        return [self.c1a, self.c1b, self.c2a, self.c2b, self.c3a, self.c3b, self.c3c, self.c4a,
                self.c4b, self.c4c, self.u3, self.u2, self.u1, self.head]

    def forward(self, x):
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")
        e1 = F.relu(self.c1b(F.relu(self.c1a(x))))
        e2 = F.relu(self.c2b(F.relu(self.c2a(F.max_pool2d(e1, 2)))))
        e3 = F.relu(self.c3a(F.max_pool2d(e2, 2)))
        e3 = F.relu(self.c3c(F.relu(self.c3b(e3))))
        e4 = F.relu(self.c4a(F.max_pool2d(e3, 2)))
        e4 = F.relu(self.c4c(F.relu(self.c4b(e4))))
        u3 = F.relu(self.u3(torch.cat([up(e4), e3], 1)))
        u2 = F.relu(self.u2(torch.cat([up(u3), e2], 1)))
        u1 = F.relu(self.u1(torch.cat([up(u2), e1], 1)))
        return self.head(u1)


def warm_start(model, path):
    """Copies a version 2 weights file (the three-level network) into `model` so that it
    computes exactly what that one did: its layers are the same, and `u3` starts as the
    identity on the 1/4 level's features (which are non-negative, so the ReLU keeps them),
    with zero weights on the new 1/8 level's, which training then grows."""
    read_into([model.c1a, model.c1b, model.c2a, model.c2b, model.c3a, model.c3b, model.c3c,
               model.u2, model.u1, model.head], path, 2)
    with torch.no_grad():
        model.u3.weight.zero_()
        for c in range(48):
            model.u3.weight[c, 64 + c, 1, 1] = 1
        model.u3.bias.zero_()


def to_input(rgb_uint8):
    return torch.from_numpy(rgb_uint8).float().permute(0, 3, 1, 2) / 255.0 - 0.5


def save(model, path):
    convs = model.convs()
    with open(path, "wb") as f:
        f.write(b"UMWD" + struct.pack("<II", VERSION, len(convs)))
        for conv in convs:
            w = conv.weight.detach().numpy().astype("<f4")
            b = conv.bias.detach().numpy().astype("<f4")
            f.write(struct.pack("<IIII", w.shape[1], w.shape[0], w.shape[2], conv.dilation[0]))
            f.write(w.tobytes())
            f.write(b.tobytes())


def read_into(layers, path, version):
    """Fills `layers` (in file order) from a weights file of `version`, checking each layer's
    shape and dilation against the file's."""
    data = open(path, "rb").read()
    assert data[:4] == b"UMWD" and struct.unpack_from("<II", data, 4) == (version, len(layers))
    at = 12
    for layer in layers:
        cin, cout, k, dilation = struct.unpack_from("<IIII", data, at)
        assert (cin, cout, k, dilation) == (layer.in_channels, layer.out_channels,
                                            layer.kernel_size[0], layer.dilation[0])
        at += 16
        n = cout * cin * k * k
        layer.weight.data = torch.from_numpy(np.frombuffer(data, "<f4", n, at).reshape(cout, cin, k, k).copy())
        at += 4 * n
        layer.bias.data = torch.from_numpy(np.frombuffer(data, "<f4", cout, at).copy())
        at += 4 * cout
    assert at == len(data)


def load(path):
    """A Detector with the weights of a file written by save()."""
    model = Detector()
    read_into(model.convs(), path, VERSION)
    return model


def parity_image(width, height):
    """The fixed test image of the Rust parity test: RGB, value (7x + 13y + 29c) % 256."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((7 * x + 13 * y + 29 * c) % 256).astype(np.uint8)


def write_parity(model, path):
    """Logits of parity_image(24, 16) (sides divisible by 8, as the stage pads to), for the
    detect stage's parity test (the burn network on its CPU path)."""
    with torch.no_grad():
        logits = model(to_input(parity_image(24, 16)[None]))[0, 0].numpy()
    with open(path, "w") as f:
        json.dump({"width": 24, "height": 16, "logits": [round(float(v), 6) for v in logits.ravel()]}, f)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--samples", type=int, default=12000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--parity", help="only write the parity fixture of the weights in --out here")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--warm", help="start from this version 2 weights file (see warm_start)")
    start.add_argument("--init", help="start from this version 3 weights file (a further round)")
    p.add_argument("--seed", type=int, default=1000,
                   help="the first data chunk's seed (a further round draws new samples)")
    args = p.parse_args()
    if args.parity:
        write_parity(load(args.out), args.parity)
        return
    torch.manual_seed(7)
    torch.set_num_threads(2)
    started = time.time()
    chunks = [(args.seed + i, 1000, args.size) for i in range(args.samples // 1000)]
    with multiprocessing.Pool(2) as pool:
        parts = pool.map(synth.batch_worker, chunks)
    xs = np.concatenate([p[0] for p in parts])
    ys = np.concatenate([p[1] for p in parts])
    print(f"data: {len(xs)} samples of {args.size} px, mark share {ys.mean():.3f}, "
          f"{time.time() - started:.0f} s", flush=True)
    model = Detector()
    if args.warm:
        warm_start(model, args.warm)
    elif args.init:
        read_into(model.convs(), args.init, VERSION)
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
