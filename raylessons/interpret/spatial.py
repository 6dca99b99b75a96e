"""Interpreting spatial models: segmentation (per-class IoU, pixel accuracy, worst frames) and points (the error
in pixels of each original image)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..data.spatial import PointsLabel, SegmentationLabel
from ..plotting import pyplot, save_figure
from .classes import plot_matrix
from .core import Interpretation, confusion_counts

__all__ = ["SegmentationInterpretation", "PointsInterpretation"]


class SegmentationInterpretation(Interpretation):
    """Masks: a confusion matrix over the codes, per-class IoU and pixel accuracy (Void ignored), worst frames."""

    label_cls = SegmentationLabel

    @property
    def void_code(self) -> int | None:
        return self.label.void_code

    def _kept(self) -> torch.Tensor:
        return self.targs != (-1 if self.void_code is None else self.void_code)

    def confusion_matrix(self) -> np.ndarray:
        """(C, C) pixel counts over the codes (row = actual, column = predicted); Void pixels are not counted."""
        keep = self._kept()
        return confusion_counts(self.targs[keep], self.preds.argmax(dim=1)[keep], len(self.classes))

    def pixel_accuracy(self) -> float:
        """The share of non-Void pixels predicted right, over the whole valid set."""
        cm = self.confusion_matrix()
        return float(np.trace(cm) / max(cm.sum(), 1))

    def per_class_iou(self) -> pd.DataFrame:
        """IoU (intersection over union), pixels and predicted pixels of each code but Void; IoU is NaN for a
        class that is neither present nor predicted."""
        cm = self.confusion_matrix().astype(np.float64)
        tp, actual, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
        union = actual + predicted - tp
        iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
        table = pd.DataFrame({"class": self.classes, "iou": iou, "pixels": actual.astype(np.int64),
                              "predicted": predicted.astype(np.int64)})
        return table.drop(index=self.void_code) if self.void_code is not None else table

    def mean_iou(self) -> float:
        """The mean IoU over the classes present or predicted (Void left out)."""
        return float(np.nanmean(self.per_class_iou()["iou"].to_numpy()))

    def frame_accuracy(self) -> torch.Tensor:
        """(N,) pixel accuracy of each frame (Void ignored; NaN for an all-Void frame)."""
        keep, right = self._kept(), self.preds.argmax(dim=1) == self.targs
        n = keep.flatten(1).sum(1)
        return torch.where(n > 0, (right & keep).flatten(1).sum(1) / n.clamp(min=1), torch.nan)

    def worst_frames(self, k: int = 5) -> list[tuple[str, float]]:
        """(file, accuracy) of the `k` frames with the lowest pixel accuracy."""
        acc = self.frame_accuracy().nan_to_num(nan=2.0)  # an all-Void frame is never among the worst
        order = acc.argsort()[:k].tolist()
        return [(self.item_name(p), float(acc[p])) for p in order]

    def plot_worst_frames(self, k: int = 3, path: str | Path = "worst_frames.png") -> Path:
        """Image, true mask and predicted mask of the `k` frames with the lowest accuracy, as a PNG."""
        acc = self.frame_accuracy().nan_to_num(nan=2.0)
        return self._plot_items(acc.argsort()[:k].tolist(), path)

    def plot_confusion_matrix(self, path: str | Path = "confusion_matrix.png", normalize: bool = True) -> Path:
        """The pixel confusion matrix over the codes (each row's share by default), as a PNG."""
        return plot_matrix(self.confusion_matrix(), self.classes, path, normalize,
                           f"pixels, Void ignored (accuracy {self.pixel_accuracy():.3f})")

    def item_title(self, pos: int) -> str:
        return f"accuracy {float(self.frame_accuracy()[pos]):.3f}, loss {float(self.losses[pos]):.3f}"


class PointsInterpretation(Interpretation):
    """Points: each item's error in pixels of its original image, the errors' distribution, the worst items."""

    label_cls = PointsLabel

    def _scale(self, pos: int) -> tuple[float, float, int, int]:
        """(original rows per valid-image row, original cols per valid-image col, valid h, valid w) of an item."""
        size = self.data.size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        items = getattr(self.ds, "items", None)
        if items is None:
            return 1.0, 1.0, h, w
        with Image.open(items[self.idxs[pos]]) as im:  # reads the header only
            W0, H0 = im.size
        if isinstance(size, int):  # resized on the short side, then centre-cropped: one scale for both axes
            return min(H0, W0) / size, min(H0, W0) / size, h, w
        return H0 / h, W0 / w, h, w

    def errors(self) -> torch.Tensor:
        """(N,) the mean distance between predicted and true points, in pixels of each original image (NaN
        when augmentation dropped every point of an item)."""
        if getattr(self, "_errors", None) is None:
            out = []
            for pos in range(len(self)):
                sr, sc, h, w = self._scale(pos)
                d = (self.preds[pos].reshape(-1, 2) - self.targs[pos].reshape(-1, 2).float())  # (K, 2) unit
                px = d * torch.tensor([h / 2 * sr, w / 2 * sc])
                dist = px.norm(dim=1)
                dist = dist[torch.isfinite(dist)]
                out.append(dist.mean() if len(dist) else torch.tensor(float("nan")))
            self._errors = torch.stack(out)
        return self._errors

    def error_summary(self) -> dict:
        """Mean, median, 90th percentile and max of the per-item errors (pixels of the original images)."""
        e = self.errors()
        e = e[torch.isfinite(e)].double()
        if not len(e):
            return {"items": 0}
        return {"items": len(e), "mean": float(e.mean()), "median": float(e.median()),
                "p90": float(torch.quantile(e, 0.9)), "max": float(e.max())}

    def plot_errors(self, path: str | Path = "point_errors.png", bins: int = 20) -> Path:
        """The distribution of the per-item errors, as a PNG histogram."""
        plt = pyplot()
        e = self.errors()
        e = e[torch.isfinite(e)].numpy()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(e, bins=bins, color="tab:blue")
        summary = self.error_summary()
        if summary["items"]:
            ax.axvline(summary["median"], color="tab:red", label=f"median {summary['median']:.1f} px")
            ax.legend()
        ax.set(xlabel="error (pixels of the original image)", ylabel="items", title=f"{len(e)} valid items")
        return save_figure(fig, path)

    def worst(self, k: int = 9) -> list[tuple[str, float]]:
        """(file, error in original pixels) of the `k` items with the largest errors."""
        e = self.errors().nan_to_num(nan=-1.0)
        return [(self.item_name(p), float(e[p])) for p in e.argsort(descending=True)[:k].tolist()]

    def plot_worst(self, k: int = 9, path: str | Path = "worst_points.png") -> Path:
        """The `k` items with the largest errors, true (green) and predicted (red) points drawn, as a PNG."""
        e = self.errors().nan_to_num(nan=-1.0)
        return self._plot_items(e.argsort(descending=True)[:k].tolist(), path)

    def item_title(self, pos: int) -> str:
        return f"off by {float(self.errors()[pos]):.1f} px (original), loss {float(self.losses[pos]):.4f}"
