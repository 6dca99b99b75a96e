"""Metrics and flattened losses with fastai v1's definitions."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "accuracy", "accuracy_thresh", "fbeta", "accuracy_ignoring", "BCEWithLogitsFlat",
    "CrossEntropyFlat", "MSELossFlat", "metric_name",
]


def accuracy(input: Tensor, targ: Tensor) -> Tensor:
    """Single-label accuracy: argmax over the last class axis equals the target."""
    return (input.argmax(dim=-1) == targ).float().mean()


def accuracy_thresh(inp: Tensor, targ: Tensor, thresh: float = 0.5, sigmoid: bool = True) -> Tensor:
    """Element-wise multi-label accuracy: (p > thresh) == target, averaged over all elements."""
    if sigmoid:
        inp = inp.sigmoid()
    return ((inp > thresh) == targ.bool()).float().mean()


def fbeta(y_pred: Tensor, y_true: Tensor, thresh: float = 0.2, beta: float = 2, eps: float = 1e-9,
          sigmoid: bool = True) -> Tensor:
    """Per-sample F-beta of thresholded predictions, averaged over the samples."""
    beta2 = beta ** 2
    if sigmoid:
        y_pred = y_pred.sigmoid()
    pred = (y_pred > thresh).float()
    true = y_true.float()
    tp = (pred * true).sum(dim=1)
    prec = tp / (pred.sum(dim=1) + eps)
    rec = tp / (true.sum(dim=1) + eps)
    return ((1 + beta2) * prec * rec / (prec * beta2 + rec + eps)).mean()


def accuracy_ignoring(void_code: int):
    """Pixel accuracy over the pixels whose target is not `void_code` (the lesson's acc_camvid)."""

    def acc(input: Tensor, target: Tensor) -> Tensor:
        # input (B, C, H, W) logits, target (B, H, W) or (B, 1, H, W) class indices
        target = target.reshape(target.shape[0], -1)
        pred = input.argmax(dim=1).reshape(target.shape[0], -1)
        keep = target != void_code
        if keep.sum() == 0:
            return torch.tensor(0.0, device=input.device)
        return (pred[keep] == target[keep]).float().mean()

    acc.__name__ = "acc_ignoring_void"
    return acc


class BCEWithLogitsFlat(nn.BCEWithLogitsLoss):
    """BCE with logits over flattened (N, C) multi-label targets."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return super().forward(input.reshape(-1), target.reshape(-1).float())


class CrossEntropyFlat(nn.CrossEntropyLoss):
    """Cross-entropy with the class axis `axis` moved last and everything else flattened."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        input = input.movedim(self.axis, -1).contiguous()  # (B, C, H, W) -> (B, H, W, C)
        return super().forward(input.reshape(-1, input.shape[-1]), target.reshape(-1).long())


class MSELossFlat(nn.MSELoss):
    """Mean squared error over flattened float predictions and targets; NaN targets (dropped points) are skipped."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        input, target = input.reshape(-1), target.reshape(-1).to(input.dtype)
        present = ~torch.isnan(target)
        # masked mean without a host sync per batch; all present -> the plain MSE, none -> 0 (graph kept)
        sq = torch.where(present, input - target.nan_to_num(), torch.zeros_like(input)).float().pow(2)
        return sq.sum() / present.sum().clamp(min=1)


def metric_name(metric) -> str:
    """The display name of a metric function or functools.partial of one."""
    func = getattr(metric, "func", metric)
    name = getattr(metric, "__name__", None) or getattr(func, "__name__", type(metric).__name__)
    return name
