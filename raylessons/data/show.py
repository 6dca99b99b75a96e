"""show_batch: a PNG grid of a batch with its labels (tags as titles)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["show_batch", "label_title"]


def label_title(label, y: torch.Tensor) -> str:
    """A short human title for one target."""
    if label.kind == "multi_category":
        return ";".join(label.classes[i] for i in torch.nonzero(y > 0.5).flatten().tolist())
    if label.kind == "category":
        return str(label.classes[int(y)])
    return ""


def show_batch(data, rows: int, path: Path, train: bool = True) -> Path:
    """Draw rows×rows items of a batch; label-specific overlays come from the label's `show`."""
    from ..recorder import _pyplot, _save

    plt = _pyplot()
    xb, yb = data.one_batch(train=train)
    n = min(rows * rows, len(xb))
    cols = rows
    nrows = math.ceil(n / cols)
    fig, axs = plt.subplots(nrows, cols, figsize=(3 * cols, 3 * nrows), squeeze=False)
    for i, ax in enumerate(axs.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(xb[i].permute(1, 2, 0).clamp(0, 1).numpy())
        show = getattr(data.label, "show", None)
        if show is not None:
            show(ax, yb[i], xb[i].shape[-2:])
        ax.set_title(label_title(data.label, yb[i]), fontsize=8)
    return _save(fig, path)
