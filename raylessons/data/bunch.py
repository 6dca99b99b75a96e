"""DataBunch: datasets + DataLoaders + normalisation; what a Learner trains on."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from ..errors import DataError
from .imageio import open_image
from .show import show_batch, show_results
from .transforms import Pipeline, imagenet_stats

__all__ = ["LabelFacts", "DataBunch", "DeviceBatch", "LabelledDataset", "ShardSampler"]

log = logging.getLogger("raylessons")


class LabelledDataset(Dataset):
    """Items opened from disk, transformed jointly with their targets.

    A corrupt item (unreadable image, truncated mask, mask codes out of range) raises DataError naming its
    file. With `on_bad_item="skip"` it is logged once, remembered and replaced by the next good item, so
    that batches keep their size; `skipped` lists the files skipped so far (in this process).
    """

    def __init__(self, items, label, pipeline, open_fn=open_image, on_bad_item: str = "raise"):
        self.items, self.label, self.pipeline, self.open_fn = items, label, pipeline, open_fn
        self.on_bad_item = on_bad_item
        self.skipped: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if self.on_bad_item == "raise":
            return self._get(i)
        n = len(self.items)
        for j in (k % n for k in range(i, i + n)):
            if j in self.skipped:
                continue
            try:
                return self._get(j)
            except DataError as e:
                self.skipped[j] = str(e)
                log.warning("skipping item %d (on_bad_item='skip'): %s", j, e)
        raise DataError(f"every one of the {n} items is bad (on_bad_item='skip' skipped them all)",
                        self.items[i] if n else None)

    def _get(self, i: int):
        x = self.open_fn(self.items[i])
        if self.label is None:
            xt, _ = self.pipeline(x)
            return xt, torch.zeros(0)
        if not self.label.spatial:
            xt, _ = self.pipeline(x)
            return xt, self.label.target(i)
        xt, yt = self.pipeline(x, self.label.pipeline_target(i, tuple(x.shape[-2:])))
        return xt, self.label.finalize(yt, tuple(xt.shape[-2:]))


class ShardSampler(Sampler):
    """Rank `rank`'s share of a dataset in order, without padding (for distributed validation)."""

    def __init__(self, n: int, rank: int, world_size: int):
        self.idxs = list(range(rank, n, world_size))

    def __iter__(self):
        return iter(self.idxs)

    def __len__(self) -> int:
        return len(self.idxs)


class DeviceBatch:
    """Moving a batch to the device and normalising it there (shared with inference)."""

    stats: tuple | None = None

    def to_device(self, xb, yb, device, channels_last: bool = False):
        """Move a batch to `device` and normalise it there."""
        xb = xb.to(device, non_blocking=True)
        yb = yb.to(device, non_blocking=True)
        if self.stats is not None and xb.is_floating_point():
            mean, std = self._norm_tensors(device, xb.dtype)
            xb = (xb - mean) / std
        if channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    def _norm_tensors(self, device, dtype):
        cache = self.__dict__.setdefault("_norm_cache", {})
        key = (str(device), dtype)
        if key not in cache:
            mean = torch.tensor(self.stats[0], device=device, dtype=dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.stats[1], device=device, dtype=dtype).view(1, -1, 1, 1)
            cache[key] = (mean, std)
        return cache[key]


class LabelFacts:
    """What the learner and exports read off the train labels (label kind, classes, c, loss), for every bunch."""

    train_ds: Dataset

    @property
    def label(self):
        return self.train_ds.label

    @property
    def classes(self):
        return self.label.classes

    @property
    def c(self) -> int:
        return self.label.c

    @property
    def loss_func(self):
        return self.label.loss_func()


class DataBunch(LabelFacts, DeviceBatch):
    """Train/valid (and optional test) DataLoaders plus what the learner needs to know of the data."""

    def __init__(self, train_ds, valid_ds, test_ds=None, bs: int = 64, val_bs: int | None = None,
                 num_workers: int = 0, path: str | Path = ".", size=None, collate_fn=None):
        self.train_ds, self.valid_ds, self.test_ds = train_ds, valid_ds, test_ds
        self.bs, self.val_bs, self.num_workers = bs, val_bs or bs, num_workers
        self.path, self.size, self.collate_fn = Path(path), size, collate_fn
        self.stats: tuple | None = None
        self.rank, self.world_size = 0, 1
        self._build_loaders()

    @classmethod
    def from_label_lists(cls, src, bs=64, val_bs=None, num_workers=0, path=None, **kwargs) -> "DataBunch":
        """Build datasets from a transformed LabelLists."""
        train_tfms, valid_tfms = src.tfms
        kind = src.train_label.target_kind
        train_label, extra = src.train_label.for_pipeline(src.tfm_kwargs)
        valid_label, _ = src.valid_label.for_pipeline(src.tfm_kwargs)

        def pipe(tfms, train):
            return Pipeline(list(tfms or []), size=src.size, train=train, target_kind=kind, **extra)

        mode = getattr(src.train, "on_bad_item", "raise")
        train_ds = LabelledDataset(src.train.items, train_label, pipe(train_tfms, True), on_bad_item=mode)
        valid_ds = LabelledDataset(src.valid.items, valid_label, pipe(valid_tfms, False), on_bad_item=mode)
        test_pipe = Pipeline(list(valid_tfms or []), size=src.size, train=False)
        test_ds = None if src.test is None else LabelledDataset(src.test.items, None, test_pipe, on_bad_item=mode)
        data = cls(train_ds, valid_ds, test_ds, bs=bs, val_bs=val_bs, num_workers=num_workers,
                   path=path or src.path, size=src.size, **kwargs)
        data.src = src
        return data

    def _loader(self, ds, bs, train: bool, sampler=None):
        if ds is None:
            return None
        kwargs = dict(num_workers=self.num_workers, collate_fn=self.collate_fn,
                      persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())
        if sampler is not None:
            return DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=train, **kwargs)
        return DataLoader(ds, batch_size=bs, shuffle=train, drop_last=train, **kwargs)

    def _build_loaders(self, train_sampler=None, valid_sampler=None) -> None:
        if len(self.train_ds) and len(self.train_ds) < self.bs:
            # fastai drops the last partial batch; with fewer items than bs nothing would train
            self.bs = len(self.train_ds)
        self.train_dl = self._loader(self.train_ds, self.bs, True, train_sampler)
        self.valid_dl = self._loader(self.valid_ds, self.val_bs, False, valid_sampler)
        self.test_dl = self._loader(self.test_ds, self.val_bs, False)

    def distributed(self, rank: int, world_size: int, seed: int = 0) -> "DataBunch":
        """Shard for DDP: train by a shuffling DistributedSampler, valid by contiguous-free striding."""
        self.rank, self.world_size = rank, world_size
        if world_size > 1:
            train_sampler = DistributedSampler(self.train_ds, world_size, rank, shuffle=True, seed=seed,
                                               drop_last=True)
            valid_sampler = ShardSampler(len(self.valid_ds), rank, world_size)
            self._build_loaders(train_sampler, valid_sampler)
        return self

    def normalize(self, stats=imagenet_stats) -> "DataBunch":
        """Normalise inputs per channel with (mean, std), applied on the batch's device."""
        self.stats = (tuple(map(float, stats[0])), tuple(map(float, stats[1])))
        self._norm_cache = {}
        return self

    def one_batch(self, train: bool = False):
        """The first batch of the train or valid loader (unnormalised, on the CPU)."""
        return next(iter(self.train_dl if train else self.valid_dl))

    def export_meta(self) -> dict:
        """What inference needs to rebuild preprocessing and decode outputs (JSON-serialisable)."""
        size = list(self.size) if isinstance(self.size, (tuple, list)) else self.size
        stats = None if self.stats is None else {"mean": list(self.stats[0]), "std": list(self.stats[1])}
        meta = {"label_kind": self.label.kind, "classes": list(self.classes or []), "size": size,
                "normalize": stats}
        meta.update(getattr(self.label, "export_meta", dict)())
        return meta

    def show_batch(self, rows: int = 3, path: str | Path = "batch.png", train: bool = True) -> Path:
        """A grid of rows×rows items with their labels as titles, written as a PNG."""
        return show_batch(self, rows, Path(path), train)

    def show_results(self, xb, yb, preds, rows: int, path: str | Path, threshold: float) -> Path:
        """Draw a batch's items with their targets and `preds` (activated model outputs) as a PNG."""
        return show_results(self, xb, yb, preds, rows, Path(path), threshold)

    def __repr__(self) -> str:
        return (f"DataBunch({self.label.kind}; train {len(self.train_ds)}, valid {len(self.valid_ds)}, "
                f"c={self.c}, bs={self.bs}, size={self.size})")
