"""Labelling a split item list: the label kinds and the chain's `label_from_*` steps."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from ..errors import ConfigError, DataError
from ..metrics import BCEWithLogitsFlat, CrossEntropyFlat, MSELossFlat
from .show import show_image, verdict_title

__all__ = ["ItemLists", "LabelLists", "Label", "MultiCategoryLabel", "CategoryLabel"]


class Label:
    """How targets of one kind are encoded, which loss suits them and how predictions decode."""

    kind = "none"
    target_kind = "none"  # what the joint transform pipeline must move with the image

    def __init__(self, raw: Sequence, classes: list | None = None):
        self.raw, self.classes = list(raw), classes

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

    def loss_func(self):
        raise NotImplementedError

    def subset(self, raw) -> "Label":
        new = copy.copy(self)
        new.raw = list(raw)
        return new

    # ----- show_results: how one item's target and prediction are drawn (PNG grids of `learn.show_results`)
    result_panels = 1  # matplotlib axes per item

    def show_result(self, axs, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, threshold: float) -> None:
        """Draw image `x` (3, h, w) in [0, 1] with target `y` and activated prediction `pred` on `axs`."""
        show_image(axs[0], x)
        axs[0].set_title(f"pred {pred.flatten().tolist()}\ntrue {y.flatten().tolist()}", fontsize=8)


class MultiCategoryLabel(Label):
    """Several tags per item: multi-hot float targets, BCE-with-logits loss."""

    kind = "multi_category"

    def __init__(self, raw: Sequence[list[str]], classes: list[str]):
        super().__init__(raw, classes)
        self.c2i = {c: i for i, c in enumerate(classes)}

    def target(self, i: int, out_size=None) -> torch.Tensor:
        y = torch.zeros(len(self.classes), dtype=torch.float32)
        y[[self.c2i[t] for t in self.raw[i]]] = 1.0
        return y

    def loss_func(self):
        return BCEWithLogitsFlat()

    def show_result(self, axs, x, y, pred, threshold: float) -> None:
        """The image titled with the tags predicted above `threshold` and the true tags."""
        show_image(axs[0], x)
        tags = lambda row: " ".join(c for c, on in zip(self.classes, row.tolist()) if on) or "-"  # noqa: E731
        verdict_title(axs[0], tags(pred > threshold), tags(y > 0.5))


class CategoryLabel(Label):
    """One class per item: an index target, cross-entropy loss."""

    kind = "category"

    def __init__(self, raw: Sequence[str], classes: list[str]):
        super().__init__(raw, classes)
        self.c2i = {c: i for i, c in enumerate(classes)}

    def target(self, i: int, out_size=None) -> torch.Tensor:
        return torch.tensor(self.c2i[self.raw[i]], dtype=torch.long)

    def loss_func(self):
        return CrossEntropyFlat()

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

    def loss_func(self):
        return MSELossFlat()


LABEL_KINDS: dict[str, type[Label]] = {
    "multi_category": MultiCategoryLabel, "category": CategoryLabel, "float": FloatLabel,
}


class ItemLists:
    """A train and a valid item list produced by a split, waiting for labels."""

    def __init__(self, path: Path, train, valid):
        self.path, self.train, self.valid = Path(path), train, valid
        self.test = None

    def __repr__(self) -> str:
        return f"ItemLists(train={len(self.train)}, valid={len(self.valid)})"

    def label_from_df(self, cols=1, label_delim: str | None = None, classes: list | None = None) -> "LabelLists":
        """Labels from column `cols` of the items' dataframe; `label_delim` splits multi-label cells."""
        from .block import _column

        raws = []
        for part in (self.train, self.valid):
            if part.df is None:
                raise DataError("label_from_df needs items created from a CSV or dataframe", self.path)
            col = _column(part.df, cols, part.where)
            raws.append([_parse_cell(v, label_delim, part, i) for i, v in enumerate(part.df[col])])
        if label_delim is not None:
            return self._labelled(MultiCategoryLabel, raws, classes, multi=True)
        return self._labelled(CategoryLabel, raws, classes, multi=False)

    def label_from_func(self, func: Callable, classes: list | None = None, label_cls=None) -> "LabelLists":
        """Labels computed from each item by `func`; the kind follows the results (or `label_cls`)."""
        raws = [[func(o) for o in part.items] for part in (self.train, self.valid)]
        if label_cls is None:
            label_cls = getattr(self.train, "_label_cls", None) or _infer_label_cls(raws[0] or raws[1], classes)
        elif isinstance(label_cls, str):
            if label_cls not in LABEL_KINDS:
                raise ConfigError(f"unknown label kind {label_cls!r}; choose one of {sorted(LABEL_KINDS)}")
            label_cls = LABEL_KINDS[label_cls]
        multi = label_cls is MultiCategoryLabel
        if label_cls in (MultiCategoryLabel, CategoryLabel):
            return self._labelled(label_cls, raws, classes, multi=multi)
        if label_cls.target_kind != "none":  # spatial labels check their files/values against the items
            mode = getattr(self.train, "on_bad_item", "raise")
            return LabelLists(self, label_cls(raws[0], classes, items=self.train.items, on_bad_item=mode),
                              label_cls(raws[1], classes, items=self.valid.items, on_bad_item=mode))
        return LabelLists(self, label_cls(raws[0], classes), label_cls(raws[1], classes))

    def label_from_folder(self, classes: list | None = None) -> "LabelLists":
        """Each item's label is the name of its parent folder."""
        return self.label_from_func(lambda o: Path(o).parent.name, classes=classes, label_cls=CategoryLabel)

    def label_for_lm(self) -> "LabelLists":
        """Language-model labels: every token's target is the next token (text item lists only)."""
        from .text import LMLabel, TextList

        if not isinstance(self.train, TextList):
            raise ConfigError(f"label_for_lm needs TextList items, got {type(self.train).__name__}")
        return LabelLists(self, LMLabel(len(self.train)), LMLabel(len(self.valid)))

    def _labelled(self, cls, raws, classes, multi: bool) -> "LabelLists":
        found = sorted({t for raw in raws for r in raw for t in (r if multi else [r])})
        if classes is None:
            classes = found
        else:
            unknown = sorted(set(found) - set(classes))
            if unknown:
                raise DataError(f"labels {unknown} are not in the given classes {list(classes)}", self.path)
        return LabelLists(self, cls(raws[0], list(classes)), cls(raws[1], list(classes)))


def _parse_cell(value, delim, part, i) -> list[str] | str:
    where = f"{part.where}:row {part.rows[i] + 2}"
    if value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == "":
        name = Path(part.items[i]).name if i < len(part.items) else "?"
        raise DataError(f"empty label cell for {name}", where)
    value = str(value)
    return [t for t in value.split(delim) if t] if delim is not None else value


def _infer_label_cls(sample: list, classes) -> type[Label]:
    first = sample[0] if sample else None
    if isinstance(first, (list, tuple)) and all(isinstance(t, str) for t in first):
        return MultiCategoryLabel
    if isinstance(first, str):
        return CategoryLabel
    if isinstance(first, Path):
        raise ConfigError("label_from_func returned file paths; pass label_cls= one of "
                          f"{sorted(LABEL_KINDS)} (paths are not labels of those kinds)")
    return FloatLabel


from .labellists import LabelLists  # noqa: E402
