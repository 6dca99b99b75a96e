"""fit_one_cycle's scheduler: sets every group's lr and Adam beta1 before each training batch."""
from __future__ import annotations

import numpy as np

from ..schedule import one_cycle_schedule
from .core import Callback

__all__ = ["OneCycleScheduler"]


class OneCycleScheduler(Callback):
    """Applies fastai v1's one-cycle; `start_epoch` resumes mid-cycle after a checkpoint."""

    order = -10

    def __init__(self, lr_max: np.ndarray, moms=(0.95, 0.85), div_factor: float = 25.0,
                 pct_start: float = 0.3, final_div: float | None = None, start_epoch: int = 0):
        self.lr_max, self.moms, self.div_factor = np.asarray(lr_max), moms, div_factor
        self.pct_start, self.final_div, self.start_epoch = pct_start, final_div, start_epoch

    def before_fit(self, learn) -> None:
        n_batches = len(learn.data.train_dl)
        n = n_batches * learn.n_epochs
        self.lrs, self.moms_sched = one_cycle_schedule(
            n, self.lr_max, self.moms, self.div_factor, self.pct_start, self.final_div)
        self.step = self.start_epoch * n_batches

    def before_batch(self, learn) -> None:
        if not learn.training:
            return
        if self.step >= len(self.lrs):
            return
        learn.set_hypers(self.lrs[self.step], self.moms_sched[self.step])

    def after_batch(self, learn) -> None:
        if learn.training:
            self.step += 1
