"""The label kinds: one class per kind of target, carrying everything that depends on the kind.

A kind says how its targets are encoded (`target`), which loss trains them (`loss_func`), how logits
become predictions (`activation`) and answers (`decode`), what the HTTP app returns (`answer`), and how a
target is titled and a prediction drawn (`title`, `show_result`). Inference, serving and plotting look the
kind up by name (`raylessons.data.kinds.label_kind`) instead of switching on it.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch

from ..errors import DataError
from ..metrics import BCEWithLogitsFlat, CrossEntropyFlat, MSELossFlat
from .show import show_image, verdict_title

__all__ = ["Label", "MultiCategoryLabel", "CategoryLabel", "FloatLabel", "LMLabel"]


class Label:
    """Targets of one kind: their encoding, loss, activation, decoding, HTTP answer and drawing."""

    kind = "none"
    target_kind = "none"  # what the joint transform pipeline must move with the image
    spatial = False  # whether targets move with the image (masks, points): answers are in the image's pixels
    served = False  # whether the HTTP app has an `answer` for this kind

    def __init__(self, raw: Sequence, classes: list | None = None):
        self.raw, self.classes = list(raw), classes

    @classmethod
    def pair(cls, raws: tuple[list, list], classes, items: tuple[list, list], on_bad_item: str,
             where) -> tuple["Label", "Label"]:
        """The train and valid labels of this kind from raw values (`items`: the split's items)."""
        return cls(raws[0], classes), cls(raws[1], classes)

    @property
    def c(self) -> int:
        return len(self.classes) if self.classes else 1

    def target(self, i: int, out_size=None):
        return self.raw[i]

    def pipeline_target(self, i: int, image_hw: tuple[int, int] | None = None):
        """The raw spatial target that moves with the image (masks, points); None for the rest."""
        return None

    pipeline_options: frozenset = frozenset()  # the `transform(...)` keywords this label kind takes

    def for_pipeline(self, options: dict) -> tuple["Label", dict]:
        """(the label the datasets use, the Pipeline's keywords) for `transform(...)` options."""
        return self, dict(options)

    def finalize(self, transformed, out_size):
        """The training target from a transformed spatial target (spatial label kinds override this)."""
        raise NotImplementedError(f"{type(self).__name__} has no spatial target")

    def subset(self, raw) -> "Label":
        new = copy.copy(self)
        new.raw = list(raw)
        return new

    def export_meta(self) -> dict:
        """Kind-specific facts an export keeps (beyond kind, classes, size and normalization)."""
        return {}

    # ----- training and inference: the same for every label of the kind, so class methods
    @classmethod
    def loss_func(cls):
        """The loss that trains this kind (fastai's flattened losses)."""
        return MSELossFlat()

    @staticmethod
    def activation(out: torch.Tensor) -> torch.Tensor:
        """Logits (B, ...) -> predictions (get_preds's rule): identity unless the kind says otherwise."""
        return out

    @classmethod
    def decode(cls, out: torch.Tensor, classes: list, threshold: float, size):
        """One activated output row -> the kind's decoded answer (`size`: the input image's (H, W))."""
        return out

    @classmethod
    def answer(cls, predictor, row: torch.Tensor, size, **query):
        """The JSON-able HTTP answer of one activated row (served kinds only)."""
        raise NotImplementedError(f"label kind {cls.kind!r} has no HTTP answer")

    # ----- test-time augmentation (learn.TTA: zooms into a corner, flips left-right)
    tta = False  # whether learn.TTA applies: the prediction stays put (classes) or maps back (points)

    @classmethod
    def tta_inverse(cls, pred: torch.Tensor, flip: bool, row_lo: float, col_lo: float,
                    scale: float) -> torch.Tensor:
        """Activated predictions (B, ...) made on images zoomed by `scale` into the window that starts at unit
        coordinates (row_lo, col_lo), then flipped left-right when `flip` -> predictions for the original
        images. Identity: a class does not move with the image (points override this)."""
        return pred

    # ----- show_batch / show_results
    def title(self, y: torch.Tensor) -> str:
        """A short human title for one target (show_batch)."""
        return ""

    result_panels = 1  # matplotlib axes per item

    def show_result(self, axs, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, threshold: float) -> None:
        """Draw image `x` (3, h, w) in [0, 1] with target `y` and activated prediction `pred` on `axs`."""
        show_image(axs[0], x)
        axs[0].set_title(f"pred {pred.flatten().tolist()}\ntrue {y.flatten().tolist()}", fontsize=8)


class _ClassLabel(Label):
    """Labels naming classes: the classes are those found in the data, or checked against the given ones."""

    multi = False  # several classes per item
    tta = True  # TTA averages the activated probabilities of the augmented passes

    def __init__(self, raw: Sequence, classes: list[str]):
        super().__init__(raw, classes)
        self.c2i = {c: i for i, c in enumerate(classes)}

    @classmethod
    def pair(cls, raws, classes, items, on_bad_item, where) -> tuple["Label", "Label"]:
        found = sorted({t for raw in raws for r in raw for t in (r if cls.multi else [r])})
        if classes is None:
            classes = found
        else:
            unknown = sorted(set(found) - set(classes))
            if unknown:
                raise DataError(f"labels {unknown} are not in the given classes {list(classes)}", where)
        return cls(raws[0], list(classes)), cls(raws[1], list(classes))


class MultiCategoryLabel(_ClassLabel):
    """Several tags per item: multi-hot float targets, BCE-with-logits loss, sigmoid, a threshold."""

    kind = "multi_category"
    multi = True
    served = True

    def target(self, i: int, out_size=None) -> torch.Tensor:
        y = torch.zeros(len(self.classes), dtype=torch.float32)
        y[[self.c2i[t] for t in self.raw[i]]] = 1.0
        return y

    @classmethod
    def loss_func(cls):
        return BCEWithLogitsFlat()

    @staticmethod
    def activation(out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)

    @classmethod
    def decode(cls, out, classes, threshold, size=None) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """(tags above `threshold`, their bool mask, the probabilities)."""
        mask = out > threshold
        return [c for c, m in zip(classes, mask.tolist()) if m], mask, out

    @classmethod
    def answer(cls, predictor, row, size, threshold: float | None = None) -> dict:
        """`{"tags": [...], "probs": {tag: p}, "threshold": t}` of one sigmoid row; when the export decides each tag
        with its own threshold (and the query sets none), `"thresholds": {tag: t}` says which."""
        tags, _, probs = predictor.decode(row, threshold)
        answer = {"tags": tags, "probs": dict(zip(predictor.classes, probs.tolist())),
                  "threshold": predictor.threshold if threshold is None else threshold}
        if threshold is None and predictor.thresholds is not None:
            answer["thresholds"] = predictor.tag_thresholds
        return answer

    def title(self, y: torch.Tensor) -> str:
        return ";".join(self.classes[i] for i in torch.nonzero(y > 0.5).flatten().tolist())

    def show_result(self, axs, x, y, pred, threshold: float) -> None:
        """The image titled with the tags predicted above `threshold` and the true tags."""
        show_image(axs[0], x)
        tags = lambda row: " ".join(c for c, on in zip(self.classes, row.tolist()) if on) or "-"  # noqa: E731
        verdict_title(axs[0], tags(pred > threshold), tags(y > 0.5))


class CategoryLabel(_ClassLabel):
    """One class per item: an index target, cross-entropy loss, softmax."""

    kind = "category"
    served = True

    def target(self, i: int, out_size=None) -> torch.Tensor:
        return torch.tensor(self.c2i[self.raw[i]], dtype=torch.long)

    @classmethod
    def loss_func(cls):
        return CrossEntropyFlat()

    @staticmethod
    def activation(out: torch.Tensor) -> torch.Tensor:
        return torch.softmax(out, dim=1)

    @classmethod
    def decode(cls, out, classes, threshold=None, size=None) -> tuple[str, int, torch.Tensor]:
        """(the class, its index, the probabilities)."""
        idx = int(out.argmax())
        return classes[idx], idx, out

    @classmethod
    def answer(cls, predictor, row, size=None) -> dict:
        """`{"label": class, "probs": {class: p}}` of one softmax row."""
        label, _, probs = predictor.decode(row)
        return {"label": label, "probs": dict(zip(predictor.classes, probs.tolist()))}

    def title(self, y: torch.Tensor) -> str:
        return str(self.classes[int(y)])

    def show_result(self, axs, x, y, pred, threshold: float) -> None:
        """The image titled with the predicted class (and its probability) and the true class."""
        show_image(axs[0], x)
        idx = int(pred.argmax())
        axs[0].set_title(f"pred {self.classes[idx]} ({float(pred[idx]):.2f})\ntrue {self.classes[int(y)]}",
                         fontsize=8, color="tab:green" if idx == int(y) else "tab:red")


class FloatLabel(Label):
    """Float regression targets, MSE loss."""

    kind = "float"

    def target(self, i: int, out_size=None) -> torch.Tensor:
        return torch.as_tensor(self.raw[i], dtype=torch.float32)


class LMLabel(Label):
    """Language-model targets: every token's target is the next one; cross-entropy over (B·T, vocab)."""

    kind = "lm"

    def __init__(self, n: int, vocab=None):
        super().__init__([0] * n, None)  # fastai's LM items carry a dummy label too
        self.vocab = vocab

    @classmethod
    def pair(cls, raws, classes, items, on_bad_item, where) -> tuple["Label", "Label"]:
        return cls(len(items[0])), cls(len(items[1]))

    @property
    def c(self) -> int:
        return len(self.vocab) if self.vocab is not None else 1

    def target(self, i: int, out_size=None) -> torch.Tensor:
        return torch.tensor(0)

    @classmethod
    def loss_func(cls):
        return CrossEntropyFlat()

