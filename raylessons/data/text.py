"""Text data blocks of the ULMFiT workflow (fastai v1 names): TextList (the bunches are in text_bunch.py).

`TextList.from_folder(path).filter_by_folder(include=[...]).split_by_rand_pct(0.1).label_for_lm()
.databunch(bs=48)` and `TextList.from_folder(path, vocab=data_lm.vocab).split_by_folder(valid='test')
.label_from_folder(classes=['neg', 'pos']).databunch(bs=48)` work as in the lesson. Texts are read,
tokenized (all cores, cached on disk under `path/tmp`) and numericalized once per split when the
bunch is built; the vocab comes from the train split (data block default min_freq 3, factories 2)
unless one is passed. Bunches save as JSON + a tensor file (`save` / `load_data`), never a pickle.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .block import ItemList
from .labels import LMLabel
from .tables import column, read_csv
from .text_bunch import TextClasDataBunch, TextDataBunch, TextLMDataBunch, load_data, numericalize_lists
from .text_loaders import pad_collate
from .tokenize import read_text_file, tokenize_texts
from .vocab import Vocab

__all__ = ["TextList", "LMLabel", "TextDataBunch", "TextLMDataBunch", "TextClasDataBunch", "load_data",
           "assert_same_vocab", "check_vocab", "numericalize_lists", "pad_collate"]

log = logging.getLogger("raylessons")


@contextmanager
def _one_warning_for_bad_bytes():
    """Silence read_text_file's per-file invalid-UTF-8 warnings; the caller reports them once."""
    logger = logging.getLogger("raylessons.data.tokenize")

    def keep(record: logging.LogRecord) -> bool:
        return "invalid UTF-8" not in str(record.msg)

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _as_vocab(vocab) -> Vocab | None:
    if vocab is None or isinstance(vocab, Vocab):
        return vocab
    return Vocab(getattr(vocab, "itos", vocab))


class TextList(ItemList):
    """Texts: files (Path items, `from_folder`) or table cells (str items, `from_df` / `from_csv`)."""

    def __init__(self, items: Sequence, path: str | Path = ".", df: pd.DataFrame | None = None,
                 on_bad_item: str = "raise", *, vocab: Vocab | None = None, max_vocab: int = 60000,
                 min_freq: int = 3, n_workers: int | None = None, cache_dir: str | Path | None = None):
        super().__init__(items, path, df, on_bad_item)
        self.vocab, self.max_vocab, self.min_freq = _as_vocab(vocab), max_vocab, min_freq
        self.n_workers, self.cache_dir = n_workers, cache_dir

    @classmethod
    def _extensions(cls):
        return (".txt",)

    _bunch_cls = TextDataBunch  # LabelLists.databunch builds a text bunch (LM or classifier, by label kind)
    _lm_label_cls = LMLabel  # label_for_lm works on texts

    @classmethod
    def from_folder(cls, path: str | Path, vocab: Vocab | None = None, extensions=(".txt",), recurse: bool = True,
                    include: Sequence[str] | None = None, **kwargs) -> "TextList":
        """Every text file under `path` (sorted); `vocab` is used as is instead of building one."""
        items = super().from_folder(path, extensions=extensions, recurse=recurse, include=include, vocab=vocab,
                                    **kwargs)
        return items._drop_empty_files() if items.on_bad_item == "skip" else items

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | Path = ".", cols="text", vocab: Vocab | None = None,
                where: str | Path = "dataframe", **kwargs) -> "TextList":
        """The texts in column `cols` of `df` (cell values, not file names); an empty cell raises DataError."""
        col = column(df, cols, where)
        texts, empty = [], []
        for i, t in enumerate(df[col]):
            if t is None or (isinstance(t, float) and np.isnan(t)) or not str(t).strip():
                if kwargs.get("on_bad_item", "raise") == "raise":
                    raise DataError(f"empty text in column {col!r}", f"{where}:row {i + 2}")
                log.warning("skipping row %d of %s (on_bad_item='skip'): empty text in column %r", i + 2, where, col)
                empty.append(i)
            texts.append(str(t))
        items = cls(texts, path=path, df=df.reset_index(drop=True), vocab=vocab, **kwargs)
        items.where = str(where)
        return items._new([i for i in range(len(texts)) if i not in set(empty)]) if empty else items

    def _drop_empty_files(self) -> "TextList":
        """With on_bad_item='skip': the list without its empty (or whitespace-only) text files, each logged."""
        keep = []
        for i, p in enumerate(self.items):
            try:
                text, _ = read_text_file(p)
            except FileNotFoundError:
                text = ""
            if text.strip():
                keep.append(i)
            else:
                log.warning("skipping %s (on_bad_item='skip'): empty or missing text file", p)
        return self if len(keep) == len(self.items) else self._new(keep)

    @classmethod
    def from_csv(cls, path: str | Path, csv_name: str, cols="text", vocab: Vocab | None = None,
                 header: str | int | None = "infer", delimiter: str = ",", **kwargs) -> "TextList":
        """The texts in column `cols` of `path/csv_name` (the lesson's `cols='text'` is the default)."""
        csv_path = Path(path) / csv_name
        df = read_csv(csv_path, header=header, delimiter=delimiter, on_bad_item=kwargs.get("on_bad_item", "raise"))
        return cls.from_df(df, path, cols=cols, vocab=vocab, where=csv_path, **kwargs)

    def read_texts(self) -> list[str]:
        """The raw texts: cells as they are, files decoded (bad bytes replaced, reported in one warning)."""
        if not self.items or not isinstance(self.items[0], (Path, os.PathLike)):
            return list(self.items)
        texts, bad = [], []
        with _one_warning_for_bad_bytes():
            for p in self.items:
                try:
                    text, had_bad = read_text_file(p)
                except FileNotFoundError:
                    raise DataError("text file not found", p) from None
                if not text.strip():
                    raise DataError("empty text file", p)
                texts.append(text)
                if had_bad:
                    bad.append(p)
        if bad:
            log.warning("%d text file(s) had invalid UTF-8 bytes, replaced by U+FFFD; the first is %s",
                        len(bad), bad[0])
        return texts

    def tokenize(self) -> list[list[str]]:
        """fastai v1 tokens of every text (parallel, cached under `cache_dir` or `path/tmp`)."""
        if not len(self):
            return []
        cache = self.cache_dir if self.cache_dir is not None else self.path / "tmp"
        return tokenize_texts(self.read_texts(), self.n_workers, cache)


def _vocab_of(obj, name: str) -> list[str]:
    if isinstance(obj, (list, tuple)):
        return list(obj)
    vocab = getattr(obj, "vocab", obj)
    if not hasattr(vocab, "itos"):
        raise ConfigError(f"{name} has no vocab (got {type(obj).__name__})")
    return list(vocab.itos)


def assert_same_vocab(a, b, names: tuple[str, str] = ("first vocab", "second vocab")) -> None:
    """Raise ConfigError naming the first differing position if two vocabs (or bunches' vocabs) differ."""
    ia, ib = _vocab_of(a, names[0]), _vocab_of(b, names[1])
    if ia == ib:
        return
    i = next((k for k, (x, y) in enumerate(zip(ia, ib)) if x != y), min(len(ia), len(ib)))
    ta = repr(ia[i]) if i < len(ia) else "<end>"
    tb = repr(ib[i]) if i < len(ib) else "<end>"
    raise ConfigError(f"vocab mismatch: {names[0]} has {len(ia)} tokens, {names[1]} has {len(ib)}; first "
                      f"difference at position {i}: {ta} vs {tb}. Build the classifier's TextList with "
                      f"vocab=data_lm.vocab so token ids mean the same words")


def check_vocab(data_clas, data_lm_or_vocab) -> None:
    """The classifier data must use the language model's vocab (ConfigError otherwise)."""
    assert_same_vocab(data_clas, data_lm_or_vocab, ("the classifier data", "the language model"))


TextDataBunch.items_cls = TextList  # the bunch factories (from_folder, from_csv, from_df) build TextLists
