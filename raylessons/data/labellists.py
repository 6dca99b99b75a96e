"""Labelled train/valid lists: the chain's `transform` and `databunch` steps."""
from __future__ import annotations

import copy
from pathlib import Path

from ..errors import ConfigError
from .block import ImageList, ItemList
from .transforms import check_size

__all__ = ["LabelLists"]


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
        self.test = ImageList.from_folder(self.path / test_folder)
        return self

    def add_test(self, items) -> "LabelLists":
        """Unlabelled test items from an iterable of paths."""
        self.test = ItemList(list(items), path=self.path)
        return self

    def transform(self, tfms=None, size=None, tfm_y: bool | None = None, **kwargs) -> "LabelLists":
        """A copy of these lists with (train, valid) augmentations and a target size.

        Spatial targets (masks, points) always move with their image (fastai's `tfm_y=True`); asking for
        `tfm_y=False` on them is an error, since the targets would silently stop matching the images.
        Extra keywords go to the pipeline: `mask_fill` (masks; default Void), `remove_out` (points).
        """
        if tfm_y is False and self.train_label.target_kind != "none":
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
        from .bunch import DataBunch

        # item lists with their own bunch kind (text) build it, with that kind's default bs
        bunch_cls = getattr(self.train, "_bunch_cls", None) or DataBunch
        if bunch_cls is DataBunch and bs is None:
            bs = 64
        return bunch_cls.from_label_lists(self, bs=bs, val_bs=val_bs, num_workers=num_workers,
                                          path=path, **kwargs)
