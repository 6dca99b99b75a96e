"""Learning-rate policies with fastai v1's numbers: slice expansion, one-cycle, the LR finder."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "DEFAULT_LR", "lr_range", "even_mults", "annealing_cos", "annealing_exp", "Scheduler",
    "one_cycle_schedule", "lr_find_schedule", "SmoothenValue",
]

# fastai v1's defaults.lr: what fit_one_cycle uses when no max_lr is given
DEFAULT_LR = slice(3e-3)

LrLike = float | slice | Sequence[float] | np.ndarray


def even_mults(start: float, stop: float, n: int) -> np.ndarray:
    """`n` values from `start` to `stop`, evenly spaced on a log scale."""
    if n == 1:
        return np.array([stop], dtype=np.float64)
    mult = stop / start
    step = mult ** (1 / (n - 1))
    return np.array([start * step ** i for i in range(n)], dtype=np.float64)


def lr_range(lr: LrLike, n_groups: int) -> np.ndarray:
    """Expand a float, a list or a `slice` into one learning rate per layer group (Learner.lr_range)."""
    if isinstance(lr, slice):
        if lr.stop is None:
            raise ValueError("a learning-rate slice needs an upper bound: slice(b) or slice(a, b)")
        if lr.start is not None:
            return even_mults(lr.start, lr.stop, n_groups)
        return np.array([lr.stop / 10] * (n_groups - 1) + [lr.stop], dtype=np.float64)
    if isinstance(lr, (list, tuple, np.ndarray)):
        arr = np.asarray(lr, dtype=np.float64)
        if arr.shape != (n_groups,):
            raise ValueError(f"got {arr.size} learning rates for {n_groups} layer groups")
        return arr
    return np.full(n_groups, float(lr), dtype=np.float64)


def annealing_cos(start, end, pct: float):
    """Cosine from `start` (pct 0) to `end` (pct 1)."""
    cos_out = math.cos(math.pi * pct) + 1
    return end + (start - end) / 2 * cos_out


def annealing_exp(start, end, pct: float):
    """Exponential from `start` (pct 0) to `end` (pct 1)."""
    return start * (end / start) ** pct


class Scheduler:
    """Steps `func` from `start` to `end` over `n_iter` calls, like fastai v1's Scheduler."""

    def __init__(self, start, end, n_iter: int, func: Callable = annealing_cos):
        self.start, self.end, self.func = start, end, func
        self.n_iter = max(1, n_iter)
        self.n = 0

    def step(self):
        self.n += 1
        return self.func(self.start, self.end, self.n / self.n_iter)

    @property
    def is_done(self) -> bool:
        return self.n >= self.n_iter


def _phased(phases: list[Scheduler], n_steps: int) -> list:
    """The value in force at each of `n_steps` batches: start first, one step after every batch."""
    values, idx = [phases[0].start], 0
    while len(values) < n_steps and idx < len(phases):
        values.append(phases[idx].step())
        if phases[idx].is_done:
            idx += 1
    return values[:n_steps]


def one_cycle_schedule(n_steps: int, lr_max: np.ndarray, moms: tuple[float, float] = (0.95, 0.85),
                       div_factor: float = 25.0, pct_start: float = 0.3,
                       final_div: float | None = None) -> tuple[list[np.ndarray], list[float]]:
    """Per-batch learning rates (one array per step) and momentums of fastai v1's one-cycle."""
    if final_div is None:
        final_div = div_factor * 1e4
    lr_max = np.asarray(lr_max, dtype=np.float64)
    a1 = int(n_steps * pct_start)
    a2 = n_steps - a1
    lrs = _phased([Scheduler(lr_max / div_factor, lr_max, a1),
                   Scheduler(lr_max, lr_max / final_div, a2)], n_steps)
    mom = _phased([Scheduler(moms[0], moms[1], a1), Scheduler(moms[1], moms[0], a2)], n_steps)
    return lrs, mom


def lr_find_schedule(start_lr: float, end_lr: float, num_it: int) -> list[float]:
    """The LR finder's exponential sweep: lr at batch i = start·(end/start)^(i/num_it)."""
    return [annealing_exp(start_lr, end_lr, i / num_it) for i in range(num_it)]


@dataclass
class SmoothenValue:
    """Debiased exponential moving average (β = 0.98 in fastai)."""

    beta: float = 0.98
    n: int = 0
    mov_avg: float = 0.0

    def add_value(self, val: float) -> float:
        self.n += 1
        self.mov_avg = self.beta * self.mov_avg + (1 - self.beta) * val
        self.smooth = self.mov_avg / (1 - self.beta ** self.n)
        return self.smooth
