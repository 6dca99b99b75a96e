"""Interpretation: one pass of the model over the validation set (predictions, targets, each item's loss) and
what it says; one subclass per label kind, picked by `Interpretation.from_learner`."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..plotting import pyplot, save_figure

__all__ = ["Interpretation", "confusion_counts", "dataset_order"]


def dataset_order(dl) -> list[int]:
    """The dataset index of each item in the order `dl` yields it (text loaders sort by length)."""
    sampler = getattr(dl, "sampler", None)
    if sampler is None:
        return list(range(len(dl.dataset)))
    return [int(i) for step in sampler for i in np.atleast_1d(step)]  # a batch sampler yields lists of indices


def confusion_counts(actual: torch.Tensor, predicted: torch.Tensor, n: int) -> np.ndarray:
    """(n, n) counts: row = actual class, column = predicted class."""
    flat = actual.reshape(-1).long() * n + predicted.reshape(-1).long()
    return torch.bincount(flat, minlength=n * n).reshape(n, n).numpy()


class Interpretation:
    """Predictions (activated), targets and per-item losses of the validation set, from one forward pass."""

    label_cls: type | None = None  # the label kind a subclass interprets
    _kinds: list[type["Interpretation"]] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.label_cls is not None:
            Interpretation._kinds.append(cls)

    def __init__(self, learn, preds: torch.Tensor, targs: torch.Tensor, losses: torch.Tensor, idxs: list[int]):
        self.learn, self.data, self.label = learn, learn.data, learn.data.label
        self.preds, self.targs, self.losses, self.idxs = preds, targs, losses, idxs
        self.ds = learn.data.valid_ds

    @classmethod
    def from_learner(cls, learn, ds_type: str = "valid") -> "Interpretation":
        """fastai's `Interpretation.from_learner`: the interpretation of `learn`'s label kind over the valid set."""
        if ds_type != "valid":
            raise ConfigError(f"ds_type must be 'valid' (the set the model was not trained on), got {ds_type!r}")
        kind = cls if cls.label_cls is not None else next(
            (k for k in Interpretation._kinds if isinstance(learn.data.label, k.label_cls)), None)
        if kind is None or not isinstance(learn.data.label, kind.label_cls):
            raise ConfigError(f"no interpretation for {learn.data.label.kind!r} labels"
                              + (f" in {cls.__name__}" if cls.label_cls is not None else ""))
        dl = learn.data.valid_dl
        preds, targs, losses = learn.get_preds(dl, with_loss=True)
        return kind(learn, preds, targs, losses, dataset_order(dl))

    def __len__(self) -> int:
        return len(self.losses)

    @property
    def classes(self) -> list[str]:
        """The label's class names (tags, codes), in index order; empty for points."""
        return list(self.label.classes or [])

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(losses, positions) of the `k` largest (or smallest) losses, sorted; positions index `preds`."""
        k = len(self.losses) if k is None else min(int(k), len(self.losses))
        return self.losses.topk(k, largest=largest)

    def item(self, pos: int):
        """(input, target) of the item at position `pos` of the pass, as the valid set gives it (unnormalised)."""
        return self.ds[self.idxs[pos]]

    def item_name(self, pos: int) -> str:
        """The file (or index) of the item at position `pos`."""
        items = getattr(self.ds, "items", None)
        return Path(items[self.idxs[pos]]).name if items is not None else f"#{self.idxs[pos]}"

    def item_title(self, pos: int) -> str:
        """prediction / actual / loss / probability, as fastai titles a top loss."""
        return f"loss {float(self.losses[pos]):.3f}"

    def plot_top_losses(self, k: int = 9, path: str | Path = "top_losses.png", largest: bool = True) -> Path:
        """The `k` items with the largest losses drawn by the label kind, titled with `item_title`, as a PNG."""
        losses, positions = self.top_losses(k, largest)
        return self._plot_items(positions.tolist(), path)

    def _plot_items(self, positions: list[int], path) -> Path:
        plt = pyplot()
        panels = self.label.result_panels
        n = len(positions)
        cols = max(1, math.ceil(math.sqrt(n))) if panels == 1 else panels
        rows = math.ceil(n / cols) if panels == 1 else n
        fig, axs = plt.subplots(max(rows, 1), cols, figsize=(3.2 * cols, 4.2 * max(rows, 1)), squeeze=False)
        for ax in axs.flat:
            ax.axis("off")
        cells = axs.flat if panels == 1 else axs
        threshold = self.threshold_for_plots()
        for pos, cell in zip(positions, cells):
            x, y = self.item(pos)
            axes = list(cell) if panels > 1 else [cell]
            self.label.show_result(axes, x, y, self.preds[pos], threshold)
            lines = [w for line in f"{self.item_name(pos)}\n{self.item_title(pos)}".splitlines()
                     for w in textwrap.wrap(line, 36)]
            axes[0].set_title("\n".join(lines), fontsize=8)
        fig.tight_layout()
        return save_figure(fig, path)

    def threshold_for_plots(self):
        """The decision threshold the drawings use (multi-label only)."""
        return 0.5
