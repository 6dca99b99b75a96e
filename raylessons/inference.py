"""Inference shared by `learn.predict`, `load_learner` and the Serve app: preprocess, forward, decode.

It sits below the Learner: `learn.predict` uses a Predictor, and Serve loads an export straight into one
(`Predictor.from_export`) without building a training Learner. What the answer means (activation,
decoding) comes from the export's label kind (`raylessons.data.kinds`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .data.bunch import DeviceBatch
from .data.imageio import open_image, pil_to_tensor
from .data.kinds import label_kind
from .data.labels import Label
from .data.transforms import Pipeline
from .device import default_device
from .errors import DataError
from .export_meta import EXPORT_MODEL, read_export_meta
from .limits import DEFAULT_THRESHOLD
from .models import build_model

__all__ = ["InferenceData", "Predictor", "load_export", "inference_size", "DEFAULT_THRESHOLD"]


class InferenceData(DeviceBatch):
    """The part of a DataBunch that inference needs, rebuilt from export metadata (no data items).

    `label` is the label-kind class (a DataBunch's is a label of that kind): both answer `kind`,
    `loss_func()`, `activation` and `decode`.
    """

    def __init__(self, meta: dict, path: str | Path = "."):
        self.meta, self.path = meta, Path(path)
        self.size = tuple(meta["size"]) if isinstance(meta.get("size"), list) else meta.get("size")
        norm = meta.get("normalize")
        self.stats = None if norm is None else (tuple(norm["mean"]), tuple(norm["std"]))
        self.classes, self.label = meta.get("classes", []), label_kind(meta["label_kind"])

    @property
    def kind(self) -> str:
        return self.label.kind

    @property
    def loss_func(self):
        return self.label.loss_func()

    @property
    def c(self) -> int:
        return len(self.classes) or 1

    def export_meta(self) -> dict:
        return {k: v for k, v in self.meta.items() if k not in ("format", "metrics", "exported_at")}


def load_export(dest: str | Path) -> tuple[torch.nn.Module, object, dict]:
    """(model in eval mode on the CPU, its splitter, meta.json) of an export directory (weights_only loading)."""
    meta = read_export_meta(dest)
    model, splitter = build_model(meta["model"])
    state = torch.load(Path(dest) / EXPORT_MODEL, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), splitter, meta


def inference_size(label: type[Label] | Label, size):
    """The input size at inference: spatial answers map back to the posted image, so squish, never crop."""
    if label.spatial and isinstance(size, int):
        return (size, size)
    return tuple(size) if isinstance(size, list) else size


class Predictor:
    """Validation-time preprocessing + batched forward + decoding, for one model."""

    def __init__(self, model: torch.nn.Module, data, device: torch.device, threshold: float | None = None,
                 thresholds: dict[str, float] | None = None):
        self.model, self.data, self.device = model.eval(), data, torch.device(device)
        self.label = data.label  # a label of the kind, or the kind's class: both decode
        self.classes = list(data.classes or [])
        self.size = inference_size(self.label, data.size)
        self.pipeline = Pipeline([], size=self.size, train=False)
        meta = getattr(data, "meta", {})
        self.threshold = threshold if threshold is not None else meta.get("threshold", DEFAULT_THRESHOLD)
        per_tag = thresholds if thresholds is not None else meta.get("thresholds")
        # one threshold per tag (tags not listed keep the global one), or None: the global threshold alone;
        # as a (C,) tensor for decoding and, built once, as the {tag: threshold} every answer shows
        self.tag_thresholds = None if not per_tag else {c: float(per_tag.get(c, self.threshold)) for c in self.classes}
        self.thresholds = None if not per_tag else torch.tensor(list(self.tag_thresholds.values()))

    @property
    def kind(self) -> str:
        return self.label.kind

    @classmethod
    def from_learner(cls, learn) -> "Predictor":
        """The predictor of a (trained or loaded) learner."""
        return cls(learn.model, learn.data, learn.device, threshold=learn.export_extra.get("threshold"),
                   thresholds=learn.export_extra.get("thresholds"))

    @classmethod
    def from_export(cls, dest: str | Path, device: str | None = None) -> "Predictor":
        """Load an export directory for inference (no Learner is built)."""
        model, _, meta = load_export(dest)
        device = torch.device(device) if device is not None else default_device()
        return cls(model.to(device), InferenceData(meta, path=dest), device)

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
        return self.label.activation(out.float()).cpu()

    def decode(self, out: torch.Tensor, threshold: float | None = None, size: tuple[int, int] | None = None):
        """Decode one activated output row into the label kind's answer (`size`: the input image's (H, W)).

        multi-label: (tags, bool mask, probs); category: (class, index, probs);
        segmentation: (mask (H, W) of class ids at `size`, names of the classes present, probs (C, h, w));
        points: ((K, 2) (row, col) in pixels of `size`, (K, 2) in [-1, 1], raw output).
        """
        if threshold is None:  # the export's own: per tag when it has them
            threshold = self.threshold if self.thresholds is None else self.thresholds
        return self.label.decode(out, self.classes, threshold, size or self.size)

    def predict(self, item, threshold: float | None = None):
        """The decoded answer for one item."""
        x, size = self.prepare(item)
        return self.decode(self.forward([x])[0], threshold, size)
