"""The start of the data-block chain: item lists and their splits (items -> split -> ItemLists).

The chain runs one way: `ItemList.split_*` gives `ItemLists` (labellists.py), whose `label_from_*` gives
`LabelLists`, whose `transform` and `databunch` give a DataBunch. Item lists of other kinds (vision.py,
text.py) subclass `ItemList` and say which label kind or bunch follows through class attributes.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .labellists import ItemLists
from .tables import check_on_bad_item, column, flag, read_csv

__all__ = ["ItemList", "ImageList", "IMAGE_EXTENSIONS"]

log = logging.getLogger("raylessons")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ItemList:
    """A list of items (file paths) rooted at `path`; the start of every chain."""

    _label_cls = None  # the label kind `label_from_func` makes by default (None: inferred from the values)
    _lm_label_cls = None  # the label kind `label_for_lm` makes (text item lists only)
    _bunch_cls = None  # the bunch `databunch` builds (None: DataBunch)

    def __init__(self, items: Sequence, path: str | Path = ".", df: pd.DataFrame | None = None,
                 on_bad_item: str = "raise"):
        check_on_bad_item(on_bad_item)
        self.items, self.path, self.df, self.on_bad_item = list(items), Path(path), df, on_bad_item
        self.rows = list(range(len(self.items)))  # positions in the source table, for error messages
        self.where: str = str(path)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def _new(self, idxs) -> "ItemList":
        new = copy.copy(self)
        new.items = [self.items[i] for i in idxs]
        new.rows = [self.rows[i] for i in idxs]
        new.df = None if self.df is None else self.df.iloc[list(idxs)].reset_index(drop=True)
        return new

    # ----- constructors
    @classmethod
    def from_folder(cls, path: str | Path, extensions: Iterable[str] | None = None, recurse: bool = True,
                    include: Sequence[str] | None = None, **kwargs) -> "ItemList":
        """Every file under `path` with one of `extensions`, sorted."""
        path = Path(path)
        if not path.is_dir():
            raise DataError("folder not found", path)
        exts = {e.lower() for e in (extensions or cls._extensions())}
        pattern = "**/*" if recurse else "*"
        items = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in exts)
        if include is not None:
            items = [p for p in items if p.relative_to(path).parts[0] in include]
        if not items:
            raise DataError(f"no files with extensions {sorted(exts)} found", path)
        return cls(items, path=path, **kwargs)

    @classmethod
    def _extensions(cls):
        return IMAGE_EXTENSIONS

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | Path = ".", cols=0, folder: str | None = None,
                suffix: str = "", where: str | Path = "dataframe", **kwargs) -> "ItemList":
        """Items named by column `cols` of `df`, as `path/folder/<name><suffix>`."""
        path = Path(path)
        col = column(df, cols, where)
        names = df[col]
        bad = names.isna() | (names.astype(str).str.strip() == "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"empty file name in column {col!r}", f"{where}:row {row + 2}")
        base = path / folder if folder else path
        items = [base / f"{name}{suffix}" for name in names.astype(str)]
        items = cls(items, path=path, df=df.reset_index(drop=True), **kwargs)
        items.where = str(where)
        return items._check_exists(where)

    @classmethod
    def from_csv(cls, path: str | Path, csv_name: str, cols=0, folder: str | None = None, suffix: str = "",
                 header: str | int | None = "infer", delimiter: str = ",", **kwargs) -> "ItemList":
        """Items named in a CSV file (the lesson's `from_csv(path, 'train_v2.csv', folder=..., suffix=...)`)."""
        csv_path = Path(path) / csv_name
        df = read_csv(csv_path, header=header, delimiter=delimiter, on_bad_item=kwargs.get("on_bad_item", "raise"))
        return cls.from_df(df, path, cols=cols, folder=folder, suffix=suffix, where=csv_path, **kwargs)

    def _check_exists(self, where) -> "ItemList":
        missing = [i for i, p in enumerate(self.items) if not Path(p).is_file()]
        if not missing:
            return self
        if self.on_bad_item == "raise":
            i = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"row {i + 2} lists {self.items[i]}, which does not exist{more}", where)
        for i in missing:
            log.warning("skipping row %d of %s: %s does not exist", i + 2, where, self.items[i])
        keep = sorted(set(range(len(self.items))) - set(missing))
        return self._new(keep)

    def filter_by_func(self, func: Callable) -> "ItemList":
        """Keep the items for which `func(item)` is true."""
        return self._new([i for i, o in enumerate(self.items) if func(o)])

    def filter_by_folder(self, include: Sequence[str] | None = None,
                         exclude: Sequence[str] | None = None) -> "ItemList":
        """Keep the items whose first folder under `path` is in `include` and not in `exclude` (fastai)."""
        def keep(o) -> bool:
            try:
                top = Path(o).relative_to(self.path).parts[0]
            except ValueError:
                raise DataError(f"filter_by_folder: {o} is not a file under {self.path}", self.path) from None
            return (include is None or top in include) and (exclude is None or top not in exclude)

        return self.filter_by_func(keep)

    # ----- splits
    def split_by_idxs(self, train_idx, valid_idx) -> "ItemLists":
        """Split by explicit index lists."""
        return ItemLists(self.path, self._new(train_idx), self._new(valid_idx))

    def split_by_idx(self, valid_idx) -> "ItemLists":
        """The items at `valid_idx` validate, the rest train."""
        valid = set(int(i) for i in valid_idx)
        return self.split_by_idxs([i for i in range(len(self)) if i not in valid], sorted(valid))

    def split_by_rand_pct(self, valid_pct: float = 0.2, seed: int | None = None) -> "ItemLists":
        """A random `valid_pct` of the items validate (fastai: permutation, first int(pct·n) are valid)."""
        if not 0 <= valid_pct < 1:
            raise ValueError(f"valid_pct must be in [0, 1), got {valid_pct}")
        rng = np.random.RandomState(seed) if seed is not None else np.random
        perm = rng.permutation(len(self))
        cut = int(valid_pct * len(self))
        return self.split_by_idxs(sorted(perm[cut:]), sorted(perm[:cut]))

    def split_by_valid_func(self, func: Callable) -> "ItemLists":
        """Items for which `func(item)` is true validate."""
        return self.split_by_idx([i for i, o in enumerate(self.items) if func(o)])

    def split_from_df(self, col=2) -> "ItemLists":
        """Items whose cell in column `col` of the source table is true validate (the `is_valid` column)."""
        if self.df is None:
            raise DataError("split_from_df needs items created from a CSV or dataframe", self.path)
        name = column(self.df, col, self.where)
        return self.split_by_idx([i for i, v in enumerate(self.df[name])
                                  if flag(v, f"{self.where}:row {self.rows[i] + 2}")])

    def split_by_files(self, valid_names: Iterable[str]) -> "ItemLists":
        """Items whose file name is in `valid_names` validate."""
        names = {Path(n).name for n in valid_names}
        return self.split_by_valid_func(lambda o: Path(o).name in names)

    def split_by_fname_file(self, fname: str | Path, path: str | Path | None = None) -> "ItemLists":
        """Items named in the text file `fname` (relative to `path`) validate."""
        file = Path(path or self.path) / fname
        if not file.is_file():
            raise DataError("validation list file not found", file)
        return self.split_by_files([line.strip() for line in file.read_text().splitlines() if line.strip()])

    def split_by_folder(self, train: str = "train", valid: str = "valid") -> "ItemLists":
        """Items under a `train` folder train and under a `valid` folder validate (others are dropped)."""
        def top(o):
            return Path(o).relative_to(self.path).parts[0]

        tr = [i for i, o in enumerate(self.items) if top(o) == train]
        va = [i for i, o in enumerate(self.items) if top(o) == valid]
        if not tr or not va:
            raise DataError(f"split_by_folder needs items under both '{train}/' and '{valid}/'", self.path)
        return self.split_by_idxs(tr, va)

    def split_by_group(self, group_fn: Callable, valid_pct: float = 0.2, seed: int | None = None) -> "ItemLists":
        """Whole groups (person, video…) go to one side: a random `valid_pct` of the groups validate."""
        groups = [group_fn(o) for o in self.items]
        uniq = sorted(set(groups), key=str)
        if len(uniq) < 2:
            raise DataError(f"split_by_group found {len(uniq)} group(s); it needs at least 2", self.path)
        rng = np.random.RandomState(seed) if seed is not None else np.random
        perm = rng.permutation(len(uniq))
        n_valid = min(max(1, round(valid_pct * len(uniq))), len(uniq) - 1)
        valid_groups = {uniq[i] for i in perm[:n_valid]}
        return self.split_by_idx([i for i, g in enumerate(groups) if g in valid_groups])

    def split_none(self) -> "ItemLists":
        """Everything trains; the validation set is empty."""
        return self.split_by_idxs(range(len(self)), [])


class ImageList(ItemList):
    """Items that are image files."""
