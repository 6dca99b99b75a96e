"""The chain after the split: `label_from_*` (ItemLists -> LabelLists), then `transform` and `databunch`."""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Callable

import pandas as pd

from ..errors import ConfigError, DataError
from .bunch import DataBunch
from .kinds import LABEL_KINDS, label_kind
from .labels import CategoryLabel, FloatLabel, Label, MultiCategoryLabel
from .tables import column
from .transforms import check_size

__all__ = ["HOLD_OUT_USES", "ItemLists", "LabelLists", "held_out_share"]

HOLD_OUT_USES = ("train", "test")


def held_out_share(name: str, seed: int = 0) -> float:
    """Where item `name` falls in [0, 1) for `ItemLists.hold_out`: a hash, so the same on every machine and in any
    order, and an item keeps its side when others are added or removed."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ItemLists:
    """A train and a valid item list produced by a split, waiting for labels."""

    def __init__(self, path: Path, train, valid):
        self.path, self.train, self.valid = Path(path), train, valid
        self.test = None
        self.training_lists = None  # a test split's (hold_out use="test") training lists: its class source

    def __repr__(self) -> str:
        return f"ItemLists(train={len(self.train)}, valid={len(self.valid)})"

    def _name(self, item) -> str:
        """The name an item is held out by: its path under `path` ('train-jpg/x.jpg'), or the item as text."""
        try:
            return Path(item).relative_to(self.path).as_posix()
        except (TypeError, ValueError):
            return str(item)

    def hold_out(self, pct: float = 0.0, seed: int = 0, use: str = "train") -> "ItemLists":
        """Set aside a test set that neither training nor model selection sees: the items of train and valid alike
        whose name hashes below `pct` (`held_out_share`), the same items on every machine.

        `use="train"`: train and valid without them (what training and a sweep's selection get).
        `use="test"`: valid is the held-out items, train the rest of train, so a trained model is evaluated on
        the test set with labels encoded as in training. `pct=0` holds out nothing.
        """
        if not 0 <= pct < 1:
            raise ConfigError(f"test_pct must be in [0, 1), got {pct}")
        if use not in HOLD_OUT_USES:
            raise ConfigError(f"hold_out: use must be one of {list(HOLD_OUT_USES)}, not {use!r}")
        if pct == 0 and use == "train":
            return self

        def held(part) -> list[bool]:
            return [held_out_share(self._name(o), seed) < pct for o in part.items]

        tr, va = held(self.train), held(self.valid)
        train = self.train._new([i for i, h in enumerate(tr) if not h])
        if use == "train":
            new = ItemLists(self.path, train, self.valid._new([i for i, h in enumerate(va) if not h]))
        else:
            test = [i for i, h in enumerate(tr) if h], [i for i, h in enumerate(va) if h]
            if not test[0] and not test[1]:
                raise DataError(f"test_pct={pct} holds out none of the {len(tr) + len(va)} items; raise it",
                                self.path)
            valid = self.train._new(test[0])
            valid.items += [self.valid.items[i] for i in test[1]]
            valid.rows += [self.valid.rows[i] for i in test[1]]
            if valid.df is not None:
                valid.df = pd.concat([valid.df, self.valid._new(test[1]).df], ignore_index=True)
            new = ItemLists(self.path, train, valid)
            # labels found in the data take their classes from what training sees, not from the test items
            new.training_lists = ItemLists(self.path, train, self.valid._new([i for i, h in enumerate(va) if not h]))
        if not len(new.train):
            raise DataError(f"test_pct={pct} leaves no training items", self.path)
        return new

    def label_from_df(self, cols=1, label_delim: str | None = None, classes: list | None = None) -> "LabelLists":
        """Labels from column `cols` of the items' dataframe; `label_delim` splits multi-label cells."""
        raws = []
        for part in (self.train, self.valid):
            if part.df is None:
                raise DataError("label_from_df needs items created from a CSV or dataframe", self.path)
            col = column(part.df, cols, part.where)
            raws.append([_parse_cell(v, label_delim, part, i) for i, v in enumerate(part.df[col])])
        if classes is None and self.training_lists is not None:
            classes = self.training_lists.label_from_df(cols, label_delim).classes
        return self._labelled(MultiCategoryLabel if label_delim is not None else CategoryLabel, raws, classes)

    def label_from_func(self, func: Callable, classes: list | None = None, label_cls=None) -> "LabelLists":
        """Labels computed from each item by `func`; the kind follows the item list, the results or `label_cls`."""
        raws = [[func(o) for o in part.items] for part in (self.train, self.valid)]
        if label_cls is None:
            label_cls = getattr(self.train, "_label_cls", None) or _infer_label_cls(raws[0] or raws[1])
        elif isinstance(label_cls, str):
            label_cls = label_kind(label_cls)
        if classes is None and self.training_lists is not None and hasattr(label_cls, "multi"):  # class labels
            classes = self.training_lists.label_from_func(func, label_cls=label_cls).classes
        return self._labelled(label_cls, raws, classes)

    def label_from_folder(self, classes: list | None = None) -> "LabelLists":
        """Each item's label is the name of its parent folder."""
        return self.label_from_func(lambda o: Path(o).parent.name, classes=classes, label_cls=CategoryLabel)

    def label_for_lm(self) -> "LabelLists":
        """Language-model labels: every token's target is the next token (text item lists only)."""
        label_cls = getattr(self.train, "_lm_label_cls", None)
        if label_cls is None:
            raise ConfigError(f"label_for_lm needs TextList items, got {type(self.train).__name__}")
        return self._labelled(label_cls, [[], []], None)

    def _labelled(self, cls: type[Label], raws, classes) -> "LabelLists":
        mode = getattr(self.train, "on_bad_item", "raise")
        try:
            train, valid = cls.pair(raws, classes, (self.train.items, self.valid.items), mode, self.path)
        except DataError as e:
            if self.training_lists is None:
                raise
            why = e.args[0].removeprefix(f"{e.where}: ")
            raise DataError(f"the held-out test items carry labels that no training item has, so no model trained "
                            f"on this split can score them ({why}); lower test_pct or add items", self.path) from None
        return LabelLists(self, train, valid)


def _parse_cell(value, delim, part, i) -> list[str] | str:
    where = f"{part.where}:row {part.rows[i] + 2}"
    if value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == "":
        name = Path(part.items[i]).name if i < len(part.items) else "?"
        raise DataError(f"empty label cell for {name}", where)
    value = str(value)
    return [t for t in value.split(delim) if t] if delim is not None else value


def _infer_label_cls(sample: list) -> type[Label]:
    first = sample[0] if sample else None
    if isinstance(first, (list, tuple)) and all(isinstance(t, str) for t in first):
        return MultiCategoryLabel
    if isinstance(first, str):
        return CategoryLabel
    if isinstance(first, Path):
        raise ConfigError("label_from_func returned file paths; pass label_cls= one of "
                          f"{sorted(LABEL_KINDS)} (paths are not labels of those kinds)")
    return FloatLabel


class LabelLists:
    """Labelled train and valid lists (the lesson's `src`), re-transformable at any size."""

    def __init__(self, item_lists, train_label, valid_label):
        self.path = item_lists.path
        self.train, self.valid = item_lists.train, item_lists.valid
        self.train_label, self.valid_label = train_label, valid_label
        self.test = None
        self.tfms, self.size, self.tfm_y, self.tfm_kwargs = ([], []), None, None, {}

    def __repr__(self) -> str:
        return (f"LabelLists({self.train_label.kind}, train={len(self.train)}, valid={len(self.valid)}, "
                f"classes={len(self.train_label.classes or [])})")

    @property
    def classes(self):
        return self.train_label.classes

    def add_test_folder(self, test_folder: str = "test", label=None) -> "LabelLists":
        """Unlabelled test items from `path/test_folder`."""
        self.test = type(self.train).from_folder(self.path / test_folder)
        return self

    def add_test(self, items) -> "LabelLists":
        """Unlabelled test items from an iterable of paths."""
        self.test = type(self.train)(list(items), path=self.path)
        return self

    def transform(self, tfms=None, size=None, tfm_y: bool | None = None, **kwargs) -> "LabelLists":
        """A copy of these lists with (train, valid) augmentations and a target size.

        Spatial targets (masks, points) always move with their image (fastai's `tfm_y=True`); asking for
        `tfm_y=False` on them is an error, since the targets would silently stop matching the images.
        Extra keywords go to the pipeline: `mask_fill` (masks; default Void), `remove_out` (points).
        """
        if tfm_y is False and self.train_label.spatial:
            raise ConfigError(f"{self.train_label.kind} targets must be transformed with their images; "
                              "drop tfm_y=False (or pass tfm_y=True)")
        allowed = self.train_label.pipeline_options
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise ConfigError(f"transform() got unexpected options {unknown} for {self.train_label.kind} "
                              f"labels; allowed: {sorted(allowed) or 'none'}")
        new = copy.copy(self)
        new.tfms = tuple(tfms) if tfms is not None else ([], [])
        new.size, new.tfm_y, new.tfm_kwargs = check_size(size), tfm_y, kwargs
        return new

    def databunch(self, bs: int | None = None, val_bs: int | None = None, num_workers: int = 0,
                  path: str | Path | None = None, **kwargs):
        """DataLoaders over these lists (train shuffled with drop_last, valid in order; bs 64 for images)."""
        # item lists with their own bunch kind (text) build it, with that kind's default bs
        bunch_cls = getattr(self.train, "_bunch_cls", None) or DataBunch
        if bunch_cls is DataBunch and bs is None:
            bs = 64
        return bunch_cls.from_label_lists(self, bs=bs, val_bs=val_bs, num_workers=num_workers,
                                          path=path, **kwargs)
