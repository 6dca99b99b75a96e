"""Spatial label kinds: segmentation masks and points, which move with their image through every transform.

Masks: areas a transform brings in from outside the source get `mask_fill` (Void when the codes have one,
so the void-ignoring metric skips them). Points: the model's target is (row, col) scaled to [-1, 1]
(`points_to_unit`). A point that an augmentation pushes out of the image is *dropped* by default
(`transform(..., remove_out=True)`): its coordinates become NaN so batches keep their shape, and the
points loss (`MSELossFlat`) skips NaN targets. `remove_out=False` keeps it, outside [-1, 1].
"""
from __future__ import annotations

import copy
import io
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..answer_types import BinaryAnswer
from ..errors import DataError
from ..metrics import CrossEntropyFlat, MSELossFlat
from .imageio import open_mask
from .labels import Label
from .show import show_image
from .transforms import points_from_unit, points_to_unit

__all__ = ["SegmentationLabel", "PointsLabel", "read_codes", "mask_at", "run_lengths", "MAX_RESAMPLED_LOGITS"]

log = logging.getLogger("raylessons")

# above this many logits, a mask is upsampled by nearest neighbour from the model's argmax instead of
# resampling the class scores bilinearly (which costs C floats per output pixel)
MAX_RESAMPLED_LOGITS = 2**26


def read_codes(path: str | Path) -> list[str]:
    """Class names of a `codes.txt` (one per line, the lesson's `np.loadtxt(path/'codes.txt', dtype=str)`)."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"cannot read the class codes: {e.strerror or e}", path) from None
    if not names:
        raise DataError("codes file lists no class names", path)
    if len(set(names)) != len(names):
        raise DataError("codes file repeats a class name", path)
    return names


def mask_at(probs: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """The class-index mask (H, W) at `size_hw` of class scores (C, h, w) computed on a squished image."""
    if tuple(probs.shape[-2:]) == tuple(size_hw):
        return probs.argmax(0)
    if probs.shape[0] * size_hw[0] * size_hw[1] <= MAX_RESAMPLED_LOGITS:
        up = F.interpolate(probs[None].float(), size=size_hw, mode="bilinear", align_corners=False)
        return up[0].argmax(0)
    idx = probs.argmax(0)[None, None].float()
    return F.interpolate(idx, size=size_hw, mode="nearest-exact")[0, 0].long()


def run_lengths(mask: torch.Tensor) -> list[list[int]]:
    """Row-major runs `[[class, length], ...]` of a class-index mask."""
    flat = mask.reshape(-1)
    if flat.numel() == 0:
        return []
    starts = torch.cat([torch.tensor([0]), torch.nonzero(flat[1:] != flat[:-1]).flatten() + 1])
    lengths = torch.diff(torch.cat([starts, torch.tensor([flat.numel()])]))
    return [[int(c), int(n)] for c, n in zip(flat[starts].tolist(), lengths.tolist())]


class _SpatialLabel(Label):
    """Targets that move with the image; each item's target is checked against its item when labelled."""

    spatial = True
    served = True

    @classmethod
    def pair(cls, raws, classes, items, on_bad_item, where) -> tuple[Label, Label]:
        """Targets checked item by item (a bad one raises DataError naming it, or with on_bad_item='skip' is logged)."""
        return (cls(raws[0], classes, items=items[0], on_bad_item=on_bad_item),
                cls(raws[1], classes, items=items[1], on_bad_item=on_bad_item))


class SegmentationLabel(_SpatialLabel):
    """A class-index mask per image (a file path); cross-entropy over pixels; Void is `void_code`."""

    kind = "segmentation"
    target_kind = "mask"

    def __init__(self, raw: Sequence, classes: Sequence[str] | None = None, items: Sequence | None = None,
                 on_bad_item: str = "raise"):
        if classes is None:
            raise DataError("segmentation labels need classes=codes (the class names, in index order)")
        super().__init__([Path(p) for p in raw], [str(c) for c in classes])
        if items is not None:
            missing = [(item, mask) for item, mask in zip(items, self.raw) if not mask.is_file()]
            if missing and on_bad_item == "raise":
                item, mask = missing[0]
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise DataError(f"label file for image {Path(item).name} not found{more}", mask)
            for item, mask in missing:  # skipped by the dataset when it meets them
                log.warning("label file for image %s not found (on_bad_item='skip': the item will be skipped): %s",
                            Path(item).name, mask)
        self.void_code = self.classes.index("Void") if "Void" in self.classes else None

    @property
    def c(self) -> int:
        return len(self.classes)

    def pipeline_target(self, i: int, image_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """The mask of item `i` (int64 (H, W)), checked against the codes and the image's size."""
        mask = open_mask(self.raw[i], n_codes=len(self.classes))
        if image_hw is not None and tuple(mask.shape) != tuple(image_hw):
            raise DataError(f"mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image is "
                            f"{image_hw[0]}x{image_hw[1]}", self.raw[i])
        return mask

    def finalize(self, transformed: torch.Tensor, out_size) -> torch.Tensor:
        return transformed.long()  # (H, W)

    pipeline_options = frozenset({"mask_fill"})

    def default_mask_fill(self) -> int:
        """What fills areas brought in from outside the source: Void when there is one."""
        return self.void_code if self.void_code is not None else 0

    def for_pipeline(self, options: dict) -> tuple["SegmentationLabel", dict]:
        return self, {"mask_fill": self.default_mask_fill(), **options}

    @classmethod
    def loss_func(cls):
        return CrossEntropyFlat(axis=1)

    @staticmethod
    def activation(out: torch.Tensor) -> torch.Tensor:
        return torch.softmax(out, dim=1)  # (B, C, h, w) class probabilities

    @classmethod
    def decode(cls, out, classes, threshold=None, size=None) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """(class-index mask (H, W) at `size`, names of the classes present, probabilities (C, h, w))."""
        mask = mask_at(out, size or tuple(out.shape[-2:]))
        present = [classes[int(i)] for i in torch.unique(mask) if int(i) < len(classes)]
        return mask, present, out

    @classmethod
    def answer(cls, predictor, row, size, format: str = "png", encoding: str = "rle"):
        """The class-index mask at the posted image's size: a PNG (classes present in a header) or JSON."""
        mask, present, _ = predictor.decode(row, size=size)
        if format == "png":
            buf = io.BytesIO()
            Image.fromarray(mask.numpy().astype(np.uint8), mode="L").save(buf, format="PNG")
            return BinaryAnswer(buf.getvalue(), "image/png",
                                {"x-classes-present": ",".join(present), "x-mask-size": f"{size[0]}x{size[1]}"})
        answer = {"height": size[0], "width": size[1], "classes_present": present, "codes": predictor.classes,
                  "encoding": encoding}
        answer["mask"] = run_lengths(mask) if encoding == "rle" else mask.tolist()
        return answer

    def export_meta(self) -> dict:
        return {"void_code": self.void_code}

    def show(self, ax, y: torch.Tensor, hw) -> None:
        """Overlay the mask (Void transparent) on the image already drawn in `ax`."""
        mask = np.ma.masked_equal(y.numpy(), -1 if self.void_code is None else self.void_code)
        ax.imshow(mask, cmap="tab20", alpha=0.5, vmin=0, vmax=max(1, len(self.classes) - 1),
                  interpolation="nearest")

    result_panels = 3

    def show_result(self, axs, x, y, pred, threshold: float) -> None:
        """Three panels: the image, the true mask over it, the predicted mask over it (its accuracy, Void ignored)."""
        mask = pred.argmax(0)  # (C, h, w) probabilities -> (h, w) class ids
        keep = y != (-1 if self.void_code is None else self.void_code)
        acc = float((mask[keep] == y[keep]).float().mean()) if keep.any() else float("nan")
        for ax, target, title in ((axs[0], None, "image"), (axs[1], y, "true mask"),
                                  (axs[2], mask, f"predicted (accuracy {acc:.2f})")):
            show_image(ax, x)
            if target is not None:
                self.show(ax, target, x.shape[-2:])
            ax.set_title(title, fontsize=8)


class PointsLabel(_SpatialLabel):
    """K (row, col) points per image; the target is (K, 2) in [-1, 1]; MSE loss ignoring dropped points."""

    kind = "points"
    target_kind = "points"
    remove_out = True
    tta = True  # TTA maps each augmented pass's points back to the original image before averaging

    def __init__(self, raw: Sequence, classes=None, items: Sequence | None = None, on_bad_item: str = "raise"):
        points = [_as_points(p, items[i] if items is not None else None) for i, p in enumerate(raw)]
        counts = {len(p) for p in points}
        if len(counts) > 1:
            raise DataError(f"every item needs the same number of points; found counts {sorted(counts)}")
        super().__init__(points, None)
        self.n_points = counts.pop() if counts else 1

    @property
    def c(self) -> int:
        return 2 * self.n_points  # the model predicts (row, col) per point

    pipeline_options = frozenset({"remove_out"})

    def for_pipeline(self, options: dict) -> tuple["PointsLabel", dict]:
        # the label applies the remove_out policy (dropped -> NaN) so that every target keeps K rows
        options = dict(options)
        label = copy.copy(self)
        label.remove_out = bool(options.pop("remove_out", True))
        return label, {**options, "remove_out": False}

    def pipeline_target(self, i: int, image_hw=None) -> torch.Tensor:
        return self.raw[i]

    def finalize(self, transformed: torch.Tensor, out_size) -> torch.Tensor:
        unit = points_to_unit(transformed, tuple(out_size))  # (K, 2)
        if self.remove_out:
            outside = (unit.abs() > 1).any(dim=1)
            unit[outside] = float("nan")
        return unit

    @classmethod
    def loss_func(cls):
        return MSELossFlat()

    @classmethod
    def decode(cls, out, classes, threshold=None, size=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """((K, 2) (row, col) in pixels of `size`, (K, 2) in [-1, 1], the raw output)."""
        unit = out.reshape(-1, 2)
        return points_from_unit(unit, size), unit, out

    @classmethod
    def tta_inverse(cls, pred: torch.Tensor, flip: bool, row_lo: float, col_lo: float,
                    scale: float) -> torch.Tensor:
        """(B, 2K) (row, col) in [-1, 1] predicted on a zoomed (then maybe flipped) image -> the original image's
        coordinates: un-flip the column (c -> -c), then un-zoom (u = lo + (u' + 1) / scale)."""
        pts = pred.reshape(pred.shape[0], -1, 2)
        if flip:
            pts = pts * pts.new_tensor([1.0, -1.0])
        lo = pts.new_tensor([row_lo, col_lo])
        return (lo + (pts + 1) / scale).reshape(pred.shape)

    @classmethod
    def answer(cls, predictor, row, size) -> dict:
        """`{"row": r, "col": c}` in pixels of the posted image (`{"points": [...]}` when there are several)."""
        rc, _, _ = predictor.decode(row, size=size)
        points = [{"row": float(r), "col": float(c)} for r, c in rc.tolist()]
        return points[0] if len(points) == 1 else {"points": points}

    def export_meta(self) -> dict:
        return {"n_points": self.n_points}

    def show(self, ax, y: torch.Tensor, hw) -> None:
        """Draw the points (in pixels of the shown image) as red crosses."""
        rc = points_from_unit(y.reshape(-1, 2), tuple(hw))
        ax.scatter(rc[:, 1].numpy(), rc[:, 0].numpy(), s=60, c="red", marker="+", linewidths=2)

    def show_result(self, axs, x, y, pred, threshold: float) -> None:
        """The image with the true points (green +) and the predicted ones (red x), titled with the distance."""
        hw = tuple(x.shape[-2:])
        true, got = points_from_unit(y.reshape(-1, 2), hw), points_from_unit(pred.reshape(-1, 2), hw)
        show_image(axs[0], x)
        axs[0].scatter(true[:, 1].numpy(), true[:, 0].numpy(), s=70, c="lime", marker="+", linewidths=2,
                       label="true")
        axs[0].scatter(got[:, 1].numpy(), got[:, 0].numpy(), s=50, c="red", marker="x", linewidths=2,
                       label="predicted")
        axs[0].set(xlim=(-0.5, hw[1] - 0.5), ylim=(hw[0] - 0.5, -0.5))  # a wild guess stays off the picture
        off = (true - got).norm(dim=1)
        off = off[torch.isfinite(off)]  # a point an augmentation dropped has a NaN target
        axs[0].set_title(f"off by {float(off.mean()):.1f} px" if len(off) else "true point dropped", fontsize=8)


def _as_points(value, item) -> torch.Tensor:
    where = str(item) if item is not None else "label_from_func"
    try:
        pts = torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise DataError(f"points must be numbers, got {type(value).__name__} ({e})", where) from None
    pts = pts.reshape(1, 2) if pts.shape == (2,) else pts
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise DataError(f"points must be a (K, 2) array of (row, col), got shape {tuple(pts.shape)}", where)
    if not torch.isfinite(pts).all():
        raise DataError(f"points must be finite, got {pts.tolist()}", where)
    return pts
