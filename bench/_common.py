"""Helpers shared by the benchmarks: fixed-batch data and robust timing."""
from __future__ import annotations

import statistics

import torch

from raylessons.data.bunch import DeviceBatch
from raylessons.metrics import BCEWithLogitsFlat


class _Label:
    kind, classes, c = "multi_category", [f"t{i}" for i in range(17)], 17

    def loss_func(self):
        return BCEWithLogitsFlat()


class _Repeat:
    """A loader that yields the same batch `n` times (no decoding: measures the loop alone)."""

    def __init__(self, batch, n):
        self.batch, self.n = batch, n

    def __iter__(self):
        for _ in range(self.n):
            yield self.batch

    def __len__(self):
        return self.n


class FixedBatchData(DeviceBatch):
    """A DataBunch stand-in: `steps` identical training batches and no validation."""

    def __init__(self, xb, yb, steps):
        self.train_dl, self.valid_dl = _Repeat((xb, yb), steps), _Repeat((xb, yb), 0)
        self.label, self.classes, self.c, self.path = _Label(), _Label.classes, 17, "."
        self.size = xb.shape[-1]

    @property
    def loss_func(self):
        return BCEWithLogitsFlat()


def fixed_batch(bs=32, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(bs, 3, size, size, generator=g), (torch.rand(bs, 17, generator=g) > 0.7).float()


def steady(times: list[float], skip: int = 5) -> float:
    """Median seconds per step, ignoring warm-up steps."""
    return statistics.median(times[skip:] if len(times) > skip + 3 else times)
