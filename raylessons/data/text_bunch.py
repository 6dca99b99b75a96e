"""Text data bunches (fastai v1's TextLMDataBunch / TextClasDataBunch), their factories and JSON save/load."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import ConfigError, DataError
from .bunch import DeviceBatch, LabelFacts
from .labels import CategoryLabel, Label, LMLabel
from .show import show_table
from .text_loaders import (
    PAD_IDX,
    LMLoader,
    SortishSampler,
    SortSampler,
    TextClasLoader,
    TextDataset,
)
from .vocab import Vocab

__all__ = ["TextDataBunch", "TextLMDataBunch", "TextClasDataBunch", "load_data", "numericalize_lists"]

_FORMAT = "raylessons.text_data"


def numericalize_lists(src) -> tuple[list[np.ndarray], list[np.ndarray], Vocab]:
    """(train ids, valid ids, vocab) of labelled text lists; tokenized once per split, then memoized."""
    if getattr(src, "_text_ids", None) is not None:
        return src._text_ids
    train, valid = src.train, src.valid
    if not callable(getattr(train, "tokenize", None)):
        raise ConfigError(f"text data bunches need TextList items, got {type(train).__name__}")
    tokens = train.tokenize()
    vocab = train.vocab or Vocab.create(tokens, max_vocab=train.max_vocab, min_freq=train.min_freq)
    train_ids = [np.asarray(vocab.numericalize(t), dtype=np.int32) for t in tokens]
    del tokens
    valid_ids = [np.asarray(vocab.numericalize(t), dtype=np.int32) for t in valid.tokenize()]
    src._text_ids = (train_ids, valid_ids, vocab)
    return src._text_ids


class TextDataBunch(LabelFacts, DeviceBatch):
    """Numericalized train/valid texts, a vocab and their loaders; LM and classifier bunches batch differently."""

    default_bs = 64
    label_cls: type[Label] = Label  # the label kind a concrete bunch holds
    items_cls = None  # the item list the factories build: TextList, set where it is defined (text.py)

    def __init__(self, train_ds: TextDataset, valid_ds: TextDataset, bs: int | None = None,
                 val_bs: int | None = None, num_workers: int = 0, path: str | Path = ".",
                 seed: int | None = None):
        self.train_ds, self.valid_ds, self.test_ds = train_ds, valid_ds, None
        self.bs = bs or self.default_bs
        self.val_bs, self.num_workers, self.path = val_bs or self.bs, num_workers, Path(path)
        # the shuffling seed: drawn from torch's generator unless given, so torch.manual_seed fixes it
        self.seed = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else int(seed)
        self.size, self.rank, self.world_size = None, 0, 1
        self._build_loaders()

    @classmethod
    def from_label_lists(cls, src, bs: int | None = None, val_bs: int | None = None, num_workers: int = 0,
                         path: str | Path | None = None, **kwargs) -> "TextDataBunch":
        """Tokenize and numericalize labelled text lists (once per split) and batch them."""
        train_ids, valid_ids, vocab = numericalize_lists(src)
        return cls.from_ids(train_ids, valid_ids, vocab, src.train_label, src.valid_label, bs=bs, val_bs=val_bs,
                            num_workers=num_workers, path=path or src.path, **kwargs)

    @classmethod
    def from_ids(cls, train_ids, valid_ids, vocab: Vocab, train_label: Label, valid_label: Label,
                 **kwargs) -> "TextDataBunch":
        """A bunch of the kind the labels call for (LM or classifier) over already numericalized texts."""
        target = next((b for b in (TextLMDataBunch, TextClasDataBunch) if isinstance(train_label, b.label_cls)), None)
        if target is None:
            raise ConfigError(f"text bunches take language-model or category labels, got {train_label.kind!r}")
        if not issubclass(target, cls):
            raise ConfigError(f"{cls.__name__} cannot hold {train_label.kind!r} labels; use {target.__name__} "
                              f"(or label_for_lm / label_from_folder to match)")
        train_label, valid_label = target.dataset_labels(train_label, valid_label, vocab)
        return target(TextDataset(train_ids, train_label, vocab), TextDataset(valid_ids, valid_label, vocab),
                      **kwargs)

    # ----- what the learner and exports need
    @property
    def vocab(self) -> Vocab:
        return self.train_ds.vocab

    def distributed(self, rank: int, world_size: int, seed: int = 0) -> "TextDataBunch":
        """Shard for DDP: every rank gets distinct, shuffled train data and the same number of batches."""
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank, self.world_size, self.seed = rank, world_size, int(seed)
        self._build_loaders()
        return self

    def one_batch(self, train: bool = False):
        """The first batch of the train or valid loader (on the CPU)."""
        return next(iter(self.train_dl if train else self.valid_dl))

    def export_meta(self) -> dict:
        """JSON-able facts inference needs: label kind, classes, the vocab (itos), padding and bptt."""
        return {"label_kind": self.label.kind, "classes": list(self.classes or []), "size": None,
                "normalize": None, "vocab_size": len(self.vocab), "itos": list(self.vocab.itos),
                "pad_idx": PAD_IDX, **self._options()}

    def _options(self) -> dict:
        return {}

    def show_batch(self, rows: int = 5, train: bool = True, max_len: int = 40, show: bool = True) -> pd.DataFrame:
        """A table of the first `rows` texts of a batch (tokens, padding stripped) with their targets."""
        xb, yb = self.one_batch(train=train)
        table = pd.DataFrame(self._show_rows(xb[:rows], yb[:rows], max_len))
        if show:
            print(table.to_string(index=False))
        return table

    def show_results(self, xb, yb, preds, rows: int, path: str | Path, threshold: float = 0.5,
                     max_len: int = 30) -> Path:
        """The first `rows` texts of a batch with their targets and the model's predictions, as a PNG table."""
        table = pd.DataFrame(self._result_rows(xb[:rows], yb[:rows], preds[:rows], max_len))
        return show_table(table, Path(path))

    def _ids_text(self, ids: torch.Tensor, max_len: int) -> str:
        ids = ids[ids != PAD_IDX].tolist()
        more = " ..." if len(ids) > max_len else ""
        return self.vocab.textify(ids[:max_len]) + more

    # ----- saving without pickle
    def save(self, fname: str | Path = "data_save.json") -> Path:
        """Write `path/fname` (JSON: kind, vocab, labels, options) and the ids beside it as tensors."""
        file = self.path / fname
        ids_file = file.with_suffix(".ids.pt")
        file.parent.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for split, ds in (("train", self.train_ds), ("valid", self.valid_ds)):
            flat = np.concatenate(ds.ids) if ds.ids else np.zeros(0, dtype=np.int32)
            tensors[f"{split}_ids"] = torch.from_numpy(flat.astype(np.int32))
            tensors[f"{split}_lengths"] = torch.from_numpy(ds.lengths)
        meta = {"format": _FORMAT, "version": 1, "label_kind": self.label.kind, "itos": list(self.vocab.itos),
                "classes": list(self.classes or []), "options": self._options(), "ids_file": ids_file.name,
                "train_labels": self._raw_labels(self.train_ds), "valid_labels": self._raw_labels(self.valid_ds)}
        torch.save(tensors, ids_file.with_name(ids_file.name + ".tmp"))
        file.with_name(file.name + ".tmp").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        ids_file.with_name(ids_file.name + ".tmp").replace(ids_file)
        file.with_name(file.name + ".tmp").replace(file)
        return file

    @classmethod
    def dataset_labels(cls, train_label: Label, valid_label: Label, vocab: Vocab) -> tuple[Label, Label]:
        """The labels the datasets hold (the classifier's as they are)."""
        return train_label, valid_label

    def _raw_labels(self, ds: TextDataset) -> list:
        return list(ds.label.raw)

    @classmethod
    def saved_labels(cls, meta: dict, n_train: int, n_valid: int) -> tuple[Label, Label]:
        """The labels of a bunch written by `save` (classifier: the class of every text)."""
        return (CategoryLabel(meta["train_labels"], meta["classes"]),
                CategoryLabel(meta["valid_labels"], meta["classes"]))

    # ----- fastai's factories: TextList options (vocab, max_vocab, min_freq=2, n_workers, cache_dir) in kwargs
    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid",
                    classes: list | None = None, **kwargs) -> "TextDataBunch":
        """Texts in `path/train` and `path/valid`, labelled by folder (or for the LM with TextLMDataBunch)."""
        items = cls._items().from_folder(path, include=[train, valid], **_list_options(kwargs))
        return cls._from_split(items.split_by_folder(train=train, valid=valid), classes, None, **kwargs)

    @classmethod
    def from_df(cls, path: str | Path, train_df: pd.DataFrame, valid_df: pd.DataFrame, text_cols=1, label_cols=0,
                classes: list | None = None, **kwargs) -> "TextDataBunch":
        """Texts (column `text_cols`) and labels (column `label_cols`) from a train and a valid dataframe."""
        df = pd.concat([train_df, valid_df], ignore_index=True)
        items = cls._items().from_df(df, path, cols=text_cols, **_list_options(kwargs))
        return cls._from_split(items.split_by_idx(range(len(train_df), len(df))), classes, label_cols, **kwargs)

    @classmethod
    def from_csv(cls, path: str | Path, csv_name: str, text_cols=1, label_cols=0,
                 valid_col: str | None = "is_valid", valid_pct: float = 0.2, seed: int | None = None,
                 classes: list | None = None, delimiter: str = ",", header: str | int | None = "infer",
                 **kwargs) -> "TextDataBunch":
        """`path/csv_name`: rows with a true `valid_col` cell validate (no such column: a random valid_pct)."""
        items = cls._items().from_csv(path, csv_name, cols=text_cols, header=header, delimiter=delimiter,
                                  **_list_options(kwargs))
        if valid_col is not None and valid_col in items.df.columns:
            split = items.split_from_df(valid_col)
        else:
            split = items.split_by_rand_pct(valid_pct, seed=seed)
        return cls._from_split(split, classes, label_cols, seed=seed, **kwargs)

    @classmethod
    def _items(cls):
        if cls.items_cls is None:
            raise ConfigError("import raylessons.data.text (it defines TextList, which the factories build)")
        return cls.items_cls

    @classmethod
    def _from_split(cls, split, classes, label_cols, **kwargs) -> "TextDataBunch":
        if issubclass(cls, TextLMDataBunch):
            src = split.label_for_lm()
        elif label_cols is None:
            src = split.label_from_folder(classes=classes)
        else:
            src = split.label_from_df(label_cols, classes=classes)
        return cls.from_label_lists(src, **kwargs)


def _list_options(kwargs: dict) -> dict:
    """Move the TextList options out of `kwargs`; the factories' vocab default is fastai's min_freq=2."""
    options = {"min_freq": 2}
    options.update({k: kwargs.pop(k) for k in ("vocab", "max_vocab", "min_freq", "n_workers", "cache_dir")
                    if k in kwargs})
    return options


class TextLMDataBunch(TextDataBunch):
    """Language-model batches: (bs, bptt) windows of one token stream, targets shifted by one token."""

    label_cls = LMLabel

    @classmethod
    def dataset_labels(cls, train_label, valid_label, vocab):
        return LMLabel(len(train_label.raw), vocab), LMLabel(len(valid_label.raw), vocab)

    def _raw_labels(self, ds: TextDataset) -> list:
        return []  # LM labels are dummies

    @classmethod
    def saved_labels(cls, meta: dict, n_train: int, n_valid: int) -> tuple[Label, Label]:
        return LMLabel(n_train), LMLabel(n_valid)

    def __init__(self, train_ds, valid_ds, bptt: int = 70, **kwargs):
        self.bptt = bptt
        super().__init__(train_ds, valid_ds, **kwargs)

    def _build_loaders(self) -> None:
        self.train_dl = LMLoader(self.train_ds, self.bs, self.bptt, shuffle=True, seed=self.seed, rank=self.rank,
                                 world_size=self.world_size, equal_batches=True)
        self.valid_dl = LMLoader(self.valid_ds, self.val_bs, self.bptt, shuffle=False, rank=self.rank,
                                 world_size=self.world_size, equal_batches=False)

    def _options(self) -> dict:
        return {"bptt": self.bptt}

    def _show_rows(self, xb, yb, max_len):
        return [{"idx": i, "text": self._ids_text(x, max_len)} for i, x in enumerate(xb)]

    def _result_rows(self, xb, yb, preds, max_len, n_next: int = 8):
        """The end of each window, the next `n_next` tokens of the text and the model's guess for each of them."""
        rows = []
        for x, y, p in zip(xb, yb, preds):  # p: (T, vocab) next-token probabilities
            ctx = x[: len(x) - n_next]
            rows.append({"text": "... " + self.vocab.textify(ctx[-max_len:].tolist()),
                         "target": self.vocab.textify(y[-n_next:].tolist()),
                         "pred": self.vocab.textify(p[-n_next:].argmax(-1).tolist())})
        return rows

    def __repr__(self) -> str:
        return (f"TextLMDataBunch(train {len(self.train_ds)} texts, valid {len(self.valid_ds)}, "
                f"vocab {len(self.vocab)}, bs={self.bs}, bptt={self.bptt})")


class TextClasDataBunch(TextDataBunch):
    """Classifier batches: sortish train batches (drop_last), valid sorted by length, padded at the start."""

    default_bs = 32
    label_cls = CategoryLabel

    def __init__(self, train_ds, valid_ds, pad_idx: int = PAD_IDX, pad_first: bool = True, **kwargs):
        self.pad_idx, self.pad_first = pad_idx, pad_first
        super().__init__(train_ds, valid_ds, **kwargs)

    def _build_loaders(self) -> None:
        n_train = len(self.train_ds) // self.world_size
        if 0 < n_train < self.bs:  # fastai drops the last partial batch: with fewer items nothing would train
            self.bs = n_train
        train = SortishSampler(self.train_ds.lengths, self.bs, self.seed, self.rank, self.world_size)
        valid = SortSampler(self.valid_ds.lengths, self.val_bs, self.rank, self.world_size)
        opts = dict(pad_idx=self.pad_idx, pad_first=self.pad_first, num_workers=self.num_workers)
        self.train_dl = TextClasLoader(self.train_ds, train, **opts)
        self.valid_dl = TextClasLoader(self.valid_ds, valid, **opts)

    def _options(self) -> dict:
        return {"pad_idx": self.pad_idx, "pad_first": self.pad_first}

    def _show_rows(self, xb, yb, max_len):
        return [{"text": self._ids_text(x, max_len), "target": self.classes[int(y)]} for x, y in zip(xb, yb)]

    def _result_rows(self, xb, yb, preds, max_len):
        rows = []
        for x, y, p in zip(xb, yb, preds):  # p: (n_class,) probabilities
            idx = int(p.argmax())
            rows.append({"text": self._ids_text(x, max_len), "target": self.classes[int(y)],
                         "prediction": self.classes[idx], "probability": f"{float(p[idx]):.3f}"})
        return rows

    def __repr__(self) -> str:
        return (f"TextClasDataBunch(train {len(self.train_ds)}, valid {len(self.valid_ds)}, "
                f"classes={self.classes}, vocab {len(self.vocab)}, bs={self.bs})")


def load_data(path: str | Path, fname: str | Path = "data_save.json", bs: int | None = None,
              **kwargs) -> TextDataBunch:
    """A text bunch written by `save`, rebuilt without re-tokenizing (tensors loaded with weights_only)."""
    file = Path(path) / fname
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("saved data not found", file) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"not a saved text bunch (JSON expected): {e}", file) from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise DataError(f"not a saved text bunch (format {_FORMAT!r} expected)", file)
    missing = [k for k in ("label_kind", "itos", "classes", "ids_file", "train_labels", "valid_labels")
               if k not in meta]
    if missing:
        raise DataError(f"saved text bunch lacks keys {missing}", file)
    ids_file = file.with_name(meta["ids_file"])
    if not ids_file.is_file():
        raise DataError("the ids file beside it is missing", ids_file)
    tensors = torch.load(ids_file, map_location="cpu", weights_only=True)
    ids = {}
    for split in ("train", "valid"):
        lengths = tensors[f"{split}_lengths"].tolist()
        flat = tensors[f"{split}_ids"].numpy()
        ids[split] = np.split(flat, np.cumsum(lengths)[:-1]) if lengths else []
    vocab = Vocab(meta["itos"])
    bunch_cls = next((b for b in (TextLMDataBunch, TextClasDataBunch) if b.label_cls.kind == meta["label_kind"]), None)
    if bunch_cls is None:
        raise DataError(f"saved text bunch has label kind {meta['label_kind']!r}; expected language-model or "
                        "category labels", file)
    labels = bunch_cls.saved_labels(meta, len(ids["train"]), len(ids["valid"]))
    options = {**meta.get("options", {}), **kwargs}
    return TextDataBunch.from_ids(ids["train"], ids["valid"], vocab, *labels, bs=bs, path=path, **options)

