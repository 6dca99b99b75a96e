"""Learning-rate policies with fastai v1's numbers: slice expansion, one-cycle, the LR finder."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from .errors import ConfigError

__all__ = [
    "DEFAULT_LR", "lr_range", "even_mults", "annealing_cos", "annealing_exp", "Scheduler",
    "one_cycle_schedule", "lr_find_schedule", "SmoothenValue", "SliceSuggestion", "find_knee",
    "suggest_slice", "trim_finder_curve",
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


# ----- the lesson's rule of thumb for the unfrozen stage: slice(knee / 10, stage-1 lr / divisor)
@dataclass(frozen=True)
class SliceSuggestion:
    """max_lr=slice(lower, upper) for fit_one_cycle after unfreezing; see `suggest_slice`."""

    lower: float
    upper: float
    knee: float | None  # lr where the smoothed loss starts to shoot up (`find_knee`); None if it never does
    stage1_lr: float
    divisor: float

    def as_slice(self) -> slice:
        return slice(self.lower, self.upper)

    def to_dict(self) -> dict:
        return asdict(self)


def trim_finder_curve(lrs, losses, skip_start: int = 10, skip_end: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """An LR-finder curve as fastai plots it: the first `skip_start` and last `skip_end` points dropped."""
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if lrs.shape != losses.shape:
        raise ValueError(f"lrs and losses must have the same length, got {lrs.size} lrs and {losses.size} losses")
    end = len(lrs) - skip_end if skip_end else len(lrs)
    return lrs[skip_start:end], losses[skip_start:end]


def _finder_curve(lrs, losses, skip_start: int, skip_end: int) -> tuple[np.ndarray, np.ndarray]:
    """`trim_finder_curve`, then cut at the first non-finite loss."""
    n = len(lrs)
    lrs, losses = trim_finder_curve(lrs, losses, skip_start, skip_end)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        lrs, losses = lrs[: bad[0]], losses[: bad[0]]
    if len(losses) < 2:
        raise ValueError(f"the LR finder recorded {n} points, {len(losses)} usable after trimming skip_start="
                         f"{skip_start}, skip_end={skip_end} and cutting at the first non-finite loss; too few "
                         "to find where the loss shoots up (use more data or a larger num_it)")
    return lrs, losses


def _knee_index(losses: np.ndarray, rise: float, min_rise: float) -> int | None:
    if not 0 < rise <= 1:
        raise ConfigError(f"rise must be in (0, 1], got {rise!r}")
    if not min_rise >= 0:
        raise ConfigError(f"min_rise must be >= 0, got {min_rise!r}")
    i_min = int(losses.argmin())
    climb = float(losses[i_min:].max() - losses[i_min])
    if climb <= 0 or climb < min_rise * abs(float(losses[i_min])):
        return None
    return i_min + int(np.argmax(losses[i_min:] - losses[i_min] >= rise * climb))


def find_knee(lrs, losses, skip_start: int = 10, skip_end: int = 5, rise: float = 0.1,
              min_rise: float = 0.05) -> float | None:
    """The lr where the (already smoothed) LR-finder loss starts to shoot up, or None.

    The curve is trimmed as `suggest_lr` trims it (lrs[skip_start:len - skip_end]) and then cut at its first
    non-finite loss (a diverged run's NaN/inf tail ends the curve). With m = the minimum loss and
    M = the maximum loss at or after the minimum, the knee is the first lr after the minimum whose loss is
    >= m + rise * (M - m). If M - m < min_rise * |m| (or M == m) the loss never shoots up: None.
    ValueError if lrs and losses differ in length or fewer than 2 points are left; ConfigError if rise is
    not in (0, 1] or min_rise < 0.
    """
    lrs, losses = _finder_curve(lrs, losses, skip_start, skip_end)
    i = _knee_index(losses, rise, min_rise)
    return None if i is None else float(lrs[i])


def suggest_slice(lrs, losses, stage1_lr: float, divisor: float = 5.0, skip_start: int = 10,
                  skip_end: int = 5, rise: float = 0.1, min_rise: float = 0.05) -> SliceSuggestion:
    """Lesson 3's rule for the unfrozen stage from its LR-finder curve: slice(knee / 10, stage1_lr / divisor).

    upper = stage1_lr / divisor; lower = knee / 10 (one decade before `find_knee`'s knee). When there is no
    knee (knee=None in the result), the largest lr of the trimmed, cut curve stands in for it. If that
    gives lower >= upper, lower = upper / 10 instead, so lower < upper always.
    ConfigError if stage1_lr or divisor is not a finite number > 0.
    """
    for name, value in (("stage1_lr", stage1_lr), ("divisor", divisor)):
        if not (isinstance(value, (int, float, np.floating, np.integer)) and 0 < value < math.inf):
            raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    lrs, losses = _finder_curve(lrs, losses, skip_start, skip_end)
    i = _knee_index(losses, rise, min_rise)
    knee = None if i is None else float(lrs[i])
    upper = float(stage1_lr) / float(divisor)
    lower = (knee if knee is not None else float(lrs.max())) / 10
    if lower >= upper:
        lower = upper / 10
    return SliceSuggestion(lower, upper, knee, float(stage1_lr), float(divisor))
