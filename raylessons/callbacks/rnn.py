"""fastai v1's RNNTrainer: AR and TAR regularisation and hidden-state resets for AWD-LSTM models."""
from __future__ import annotations

from torch import nn

from .core import Callback

__all__ = ["RNNTrainer"]


def _unwrap(model: nn.Module) -> nn.Module:
    """The model itself under DDP / DataParallel wrappers (their `.module`)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


class RNNTrainer(Callback):
    """Adds alpha·mean(out²) (AR) and beta·mean((h_t+1 − h_t)²) (TAR) to the training loss; resets hidden state."""

    def __init__(self, alpha: float = 2.0, beta: float = 1.0):
        self.alpha, self.beta = alpha, beta

    @staticmethod
    def _reset(learn) -> None:
        model = _unwrap(learn.model)
        if hasattr(model, "reset"):
            model.reset()

    def before_epoch(self, learn) -> None:
        self._reset(learn)

    def after_train(self, learn) -> None:
        self._reset(learn)  # validation starts from a fresh state

    def after_loss(self, learn) -> None:
        if not learn.training:
            return
        model = _unwrap(learn.model)
        raw, out = getattr(model, "last_raw", None), getattr(model, "last_dropped", None)
        if raw is None or out is None:
            raise RuntimeError(f"RNNTrainer needs a model that stashes last_raw/last_dropped (an AWD-LSTM "
                               f"from raylessons.models.awd_lstm); got {type(model).__name__}")
        if self.alpha != 0:
            learn.loss = learn.loss + self.alpha * out.float().pow(2).mean()
        if self.beta != 0 and raw.size(1) > 1:  # (B, T, E): TAR needs two time steps
            learn.loss = learn.loss + self.beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
