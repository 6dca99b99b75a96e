"""learn.TTA: fastai v1's test-time augmentation for images (Learner methods, attached in learner.py).

Eight augmented passes over a loader: a zoom by `scale` anchored at each of the image's four corners (the
(H/scale, W/scale) window at row_pct, col_pct in {0, 1}, resized back to (H, W)), each without and with a
left-right flip. The zoom samples the window bilinearly in the unit coordinates of `points_to_unit` (the
image's outer edges are -1 and +1, grid_sample's align_corners=False), which is fastai v1's zoom matrix: a
unit coordinate u' of the zoomed image is u = lo + (u' + 1) / scale of the original, lo = -1 for the
top/left anchor and 1 - 2/scale for the bottom/right one.

The passes work on the loader's batches after `to_device` has normalised them: zooming and flipping commute
with a per-channel normalisation, so no dataset changes. Each pass's activated predictions are mapped back by
the label kind (`Label.tta_inverse`: identity for classes, the inverse zoom and flip for points) and averaged.

Deterministic: no randomness at all. fastai v1 also keeps the train set's random lighting in every pass; it is
left out here, so two calls give the same numbers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import ConfigError

__all__ = ["TTA", "tta_only", "tta_augmentations", "zoom_flip", "corner_lo"]

_DS_TYPES = ("valid", "test")


def corner_lo(pct: int, scale: float) -> float:
    """The unit coordinate where the zoom window of an axis starts: -1 at pct 0 (top/left), 1 - 2/scale at 1."""
    return -1.0 if pct == 0 else 1.0 - 2.0 / scale


def tta_augmentations() -> list[tuple[int, int, bool]]:
    """(row_pct, col_pct, flip) of the eight passes, in fastai v1's order (i & 1, i & 2, i & 4)."""
    return [(i & 1, (i >> 1) & 1, bool(i & 4)) for i in range(8)]


def zoom_flip(xb: torch.Tensor, scale: float, row_pct: int, col_pct: int, flip: bool) -> torch.Tensor:
    """(B, C, H, W) -> the (H/scale, W/scale) window anchored at (row_pct, col_pct), resized back to (H, W)
    (bilinear; sampling beyond the outermost pixel centres repeats the edge), then flipped left-right if `flip`."""
    if xb.dim() != 4 or not xb.is_floating_point():
        raise ConfigError(f"TTA zooms float image batches (B, C, H, W); got {xb.dtype} of shape {tuple(xb.shape)}")
    # affine_grid maps output (x=col, y=row) unit coordinates to input ones: u = u'/scale + (lo + 1/scale)
    row_c, col_c = corner_lo(row_pct, scale) + 1 / scale, corner_lo(col_pct, scale) + 1 / scale
    theta = torch.tensor([[1 / scale, 0.0, col_c], [0.0, 1 / scale, row_c]], dtype=xb.dtype, device=xb.device)
    grid = F.affine_grid(theta.expand(xb.shape[0], 2, 3), list(xb.shape), align_corners=False)
    out = F.grid_sample(xb, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.flip(-1) if flip else out


def _check(learn, scale: float, ds_type: str):
    """The loader of `ds_type`, after checking that TTA applies to this learner's labels and model."""
    label = learn.data.label
    if not getattr(label, "tta", False):
        raise ConfigError(f"TTA supports image classification, multi-label classification and points; this "
                          f"learner's labels are {label.kind!r}")
    if hasattr(learn.model, "reset"):
        raise ConfigError("TTA supports image models only; this model is an RNN (text), whose input cannot be "
                          "zoomed or flipped")
    if not scale >= 1:
        raise ConfigError(f"TTA's scale must be >= 1 (a zoom into the image), got {scale}")
    if ds_type not in _DS_TYPES:
        raise ConfigError(f"ds_type must be one of {', '.join(_DS_TYPES)}, got {ds_type!r}")
    dl = getattr(learn.data, f"{ds_type}_dl", None)
    if dl is None:
        raise ConfigError(f"this learner's data has no {ds_type} set")
    return dl


@torch.no_grad()
def _passes(learn, dl, scale: float) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """(plain predictions, the eight passes' predictions mapped back to the original images, targets), each
    activated like get_preds's; one trip through the loader, nine forward passes per batch (eval mode)."""
    label, augs = learn.data.label, tta_augmentations()
    learn.model.eval()
    plain, passes, targs = [], [[] for _ in augs], []
    for xb, yb in dl:
        xb, yb = learn.data.to_device(xb, yb, learn.device, learn.channels_last)
        plain.append(label.activation(learn.model(xb).float()))
        for out, (row, col, flip) in zip(passes, augs):
            pred = label.activation(learn.model(zoom_flip(xb, scale, row, col, flip)).float())
            out.append(label.tta_inverse(pred, flip, corner_lo(row, scale), corner_lo(col, scale), scale))
        targs.append(yb)
    if not targs:
        raise ConfigError("TTA got an empty loader")
    return torch.cat(plain).cpu(), [torch.cat(p).cpu() for p in passes], torch.cat(targs).cpu()


def tta_only(self, scale: float = 1.35, ds_type: str = "valid") -> list[torch.Tensor]:
    """fastai's `learn.tta_only`: the predictions of each of the eight augmented passes (see `TTA`), already
    mapped back to the original images (points), in fastai's order of (row_pct, col_pct, flip)."""
    return _passes(self, _check(self, scale, ds_type), scale)[1]


def TTA(self, beta: float | None = 0.4, scale: float = 1.35, ds_type: str = "valid"):
    """fastai v1's `learn.TTA` for images: (beta * preds + (1 - beta) * mean of the eight augmented passes,
    targets), like get_preds; `beta=None` returns (preds, the passes' mean, targets).

    preds are get_preds's (activated); the passes zoom by `scale` into each corner, with and without a left-right
    flip (`zoom_flip`). Class probabilities (single- and multi-label) are averaged as they are; points are first
    mapped back through the inverse flip and zoom. Segmentation, text and language models raise ConfigError.
    Deterministic: no random augmentation (fastai keeps the train set's random lighting; not here)."""
    if beta is not None and not 0 <= beta <= 1:
        raise ConfigError(f"TTA's beta must be in [0, 1] or None, got {beta}")
    preds, passes, targs = _passes(self, _check(self, scale, ds_type), scale)
    avg = torch.stack(passes).mean(0)
    if beta is None:
        return preds, avg, targs
    return beta * preds + (1 - beta) * avg, targs
