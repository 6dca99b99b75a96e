"""Inference shared by `learn.predict`, `load_learner` and the Serve app: preprocess, forward, decode."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from .data.bunch import DeviceBatch
from .data.imageio import open_image, pil_to_tensor
from .data.transforms import Pipeline, points_from_unit
from .errors import DataError
from .limits import DEFAULT_THRESHOLD
from .metrics import BCEWithLogitsFlat, CrossEntropyFlat, MSELossFlat

__all__ = ["InferenceData", "Predictor", "activation", "inference_size", "mask_at", "DEFAULT_THRESHOLD"]


_LOSSES = {"multi_category": BCEWithLogitsFlat, "category": CrossEntropyFlat,
           "segmentation": lambda: CrossEntropyFlat(axis=1), "points": MSELossFlat, "float": MSELossFlat,
           "lm": CrossEntropyFlat}


def activation(label_kind: str):
    """The activation that turns logits into predictions for a label kind (get_preds's rule)."""
    if label_kind == "multi_category":
        return torch.sigmoid
    if label_kind in ("category", "segmentation"):
        return lambda x: torch.softmax(x, dim=1)
    return lambda x: x


class InferenceData(DeviceBatch):
    """The part of a DataBunch that inference needs, rebuilt from export metadata (no data items)."""

    def __init__(self, meta: dict, path: str | Path = "."):
        self.meta, self.path = meta, Path(path)
        self.size = tuple(meta["size"]) if isinstance(meta.get("size"), list) else meta.get("size")
        norm = meta.get("normalize")
        self.stats = None if norm is None else (tuple(norm["mean"]), tuple(norm["std"]))
        self.classes, self.kind = meta.get("classes", []), meta["label_kind"]

    @property
    def loss_func(self):
        return _LOSSES[self.kind]()

    @property
    def c(self) -> int:
        return len(self.classes) or 1

    def export_meta(self) -> dict:
        return {k: v for k, v in self.meta.items() if k not in ("format", "metrics", "exported_at")}


_SPATIAL_KINDS = ("segmentation", "points")
# above this many logits, a mask is upsampled by nearest neighbour from the model's argmax instead of
# resampling the class scores bilinearly (which costs C floats per output pixel)
MAX_RESAMPLED_LOGITS = 2**26


def inference_size(kind: str, size):
    """The input size at inference: spatial answers map back to the posted image, so squish, never crop."""
    if kind in _SPATIAL_KINDS and isinstance(size, int):
        return (size, size)
    return tuple(size) if isinstance(size, list) else size


def mask_at(probs: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """The class-index mask (H, W) at `size_hw` of class scores (C, h, w) computed on a squished image."""
    if tuple(probs.shape[-2:]) == tuple(size_hw):
        return probs.argmax(0)
    if probs.shape[0] * size_hw[0] * size_hw[1] <= MAX_RESAMPLED_LOGITS:
        up = F.interpolate(probs[None].float(), size=size_hw, mode="bilinear", align_corners=False)
        return up[0].argmax(0)
    idx = probs.argmax(0)[None, None].float()
    return F.interpolate(idx, size=size_hw, mode="nearest-exact")[0, 0].long()


class Predictor:
    """Validation-time preprocessing + batched forward + decoding, for one model."""

    def __init__(self, model: torch.nn.Module, data, device: torch.device, threshold: float | None = None):
        self.model, self.data, self.device = model.eval(), data, device
        self.kind = data.label.kind if hasattr(data, "label") else data.kind
        self.classes = list(data.classes or [])
        self.size = inference_size(self.kind, data.size)
        self.pipeline = Pipeline([], size=self.size, train=False)
        self.threshold = threshold if threshold is not None else \
            getattr(data, "meta", {}).get("threshold", DEFAULT_THRESHOLD)

    @classmethod
    def from_learner(cls, learn) -> "Predictor":
        """The predictor of a (trained or loaded) learner."""
        return cls(learn.model, learn.data, learn.device, threshold=learn.export_extra.get("threshold"))

    @classmethod
    def from_export(cls, dest: str | Path, device: str | None = None) -> "Predictor":
        """Load an export directory for inference."""
        from .learner_io import load_learner

        learn = load_learner(dest, device=device)
        return cls(learn.model, learn.data, learn.device)

    def preprocess(self, item) -> torch.Tensor:
        """float (3, h, w) in [0, 1]: exactly the validation transforms of training."""
        return self.prepare(item)[0]

    def prepare(self, item) -> tuple[torch.Tensor, tuple[int, int]]:
        """(preprocessed input, the item's own (H, W)): spatial answers are given in the item's pixels."""
        if isinstance(item, (str, Path)):
            item = open_image(item)
        elif isinstance(item, Image.Image):
            item = pil_to_tensor(item)
        if not (isinstance(item, torch.Tensor) and item.dim() == 3 and item.shape[0] == 3):
            raise DataError(f"expected an image path, a PIL image or a (3, H, W) tensor, got {type(item).__name__}")
        x, _ = self.pipeline(item)
        return x, (int(item.shape[-2]), int(item.shape[-1]))

    @torch.inference_mode()
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Activated outputs (on the CPU) of a list of preprocessed inputs, as one batch."""
        xb = torch.stack(xs)
        xb, _ = self.data.to_device(xb, torch.zeros(len(xs)), self.device, self.device.type == "cuda")
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            out = self.model(xb)
        return activation(self.kind)(out.float()).cpu()

    def decode(self, out: torch.Tensor, threshold: float | None = None, size: tuple[int, int] | None = None):
        """Decode one activated output row into the task's answer (`size`: the input image's (H, W)).

        multi-label: (tags, bool mask, probs); category: (class, index, probs);
        segmentation: (mask (H, W) of class ids at `size`, names of the classes present, probs (C, h, w));
        points: ((K, 2) (row, col) in pixels of `size`, (K, 2) in [-1, 1], raw output).
        """
        if self.kind == "multi_category":
            thresh = self.threshold if threshold is None else threshold
            mask = out > thresh
            return [c for c, m in zip(self.classes, mask.tolist()) if m], mask, out
        if self.kind == "category":
            idx = int(out.argmax())
            return self.classes[idx], idx, out
        if self.kind == "segmentation":
            mask = mask_at(out, size or tuple(out.shape[-2:]))
            present = [self.classes[int(i)] for i in torch.unique(mask) if int(i) < len(self.classes)]
            return mask, present, out
        if self.kind == "points":
            unit = out.reshape(-1, 2)
            return points_from_unit(unit, size or self.size), unit, out
        return out

    def predict(self, item, threshold: float | None = None):
        """The decoded answer for one item."""
        x, size = self.prepare(item)
        return self.decode(self.forward([x])[0], threshold, size)
