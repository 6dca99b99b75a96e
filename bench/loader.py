"""Data-loader throughput against training-step throughput, on generated Planet images.

Run: python bench/loader.py [--n 512] [--size 64] [--bs 32]
The loader decodes JPEGs and applies the lesson's training augmentations; the step is a resnet34
forward/backward/AdamW step on CPU with 2 threads. Target: loader >= 2x the step (images/s).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from raylessons.data.synth import synth
from raylessons.tasks import planet


def loader_rate(data, epochs: int = 2) -> float:
    """Images per second the train loader delivers (decode + augment + collate), one process."""
    rates = []
    for _ in range(epochs):
        n, t = 0, time.perf_counter()
        for xb, _ in data.train_dl:
            n += len(xb)
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def step_rate(learn, steps: int = 25) -> float:
    """Images per second of training steps on one fixed batch (no loading)."""
    xb, yb = learn.data.to_device(*learn.data.one_batch(train=True), learn.device)
    learn.create_opt(1e-3)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss = learn.loss_func(learn.model(xb), yb)
        loss.backward()
        learn.opt.step()
        learn.opt.zero_grad()
        times.append(time.perf_counter() - t)
    return len(xb) / statistics.median(times[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=128, help="size of the generated JPEGs")
    parser.add_argument("--size", type=int, default=64, help="training size")
    parser.add_argument("--bs", type=int, default=32)
    parser.add_argument("--arch", default="resnet34")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        root = synth("planet", Path(d) / "planet", n=args.n, size=args.image_size, seed=0)
        cfg = planet.Config(data=str(root), size=args.size, bs=args.bs, arch=args.arch)
        data = planet.build_data(cfg)
        learn = planet.build_learner(data, cfg)
        loads, steps = [], []
        for _ in range(3):  # interleaved repeats
            loads.append(loader_rate(data, 1))
            steps.append(step_rate(learn))
    load, step = statistics.median(loads), statistics.median(steps)
    print(f"{args.arch} at {args.size} px from {args.image_size} px JPEGs, batch {args.bs}, 2 torch threads")
    print(f"train loader (num_workers=0, decode + augment): {load:8.1f} images/s")
    print(f"training step (forward+backward+AdamW):         {step:8.1f} images/s")
    print(f"loader / step: {load / step:.2f}x  (target >= 2x)")


if __name__ == "__main__":
    main()
