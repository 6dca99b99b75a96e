"""The LR finder: exponential lr sweep, stop on divergence, weights restored afterwards."""
from __future__ import annotations

import copy
import math

from ..schedule import lr_find_schedule
from .core import Callback, CancelFitException

__all__ = ["LRFinder"]


class LRFinder(Callback):
    """Sweeps lr from start_lr to end_lr over num_it batches, like fastai v1's LRFinder."""

    order = -10

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True):
        self.sched = lr_find_schedule(start_lr, end_lr, num_it)
        self.num_it, self.stop_div = num_it, stop_div

    def before_fit(self, learn) -> None:
        # kept in memory rather than on disk: nothing to clean up if the run dies
        self.saved_model = copy.deepcopy(learn.model.state_dict())
        self.saved_opt = copy.deepcopy(learn.opt.state_dict())
        self.iteration, self.best_loss = 0, math.inf
        learn.validate_each_epoch = False

    def before_batch(self, learn) -> None:
        if learn.training:
            learn.set_hypers(self.sched[min(self.iteration, self.num_it - 1)])

    def after_batch(self, learn) -> None:
        if not learn.training:
            return
        smooth = learn.recorder.smooth_loss
        if self.iteration == 0 or smooth < self.best_loss:
            self.best_loss = smooth
        self.iteration += 1
        if self.iteration >= self.num_it:
            raise CancelFitException()
        if self.stop_div and (smooth > 4 * self.best_loss or math.isnan(smooth)):
            raise CancelFitException()

    def after_fit(self, learn) -> None:
        learn.model.load_state_dict(self.saved_model)
        learn.opt.load_state_dict(self.saved_opt)
        learn.validate_each_epoch = True
        if hasattr(learn.model, "reset"):
            learn.model.reset()
