"""Text batching as in fastai v1: the LM stream (LanguageModelPreLoader) and sorted, padded classifier batches.

Every sampler draws its epoch's permutation from `seed + epoch`, so DDP ranks sharing a seed agree on
the permutation and take disjoint shares of it; `set_epoch` (called by the Learner) fixes the epoch,
and each pass without it moves to the next one.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError

__all__ = ["TextDataset", "DocSampler", "LMLoader", "SortishSampler", "SortSampler", "pad_collate",
           "TextClasLoader", "PAD_IDX"]

PAD_IDX = 1  # xxpad's id in every vocab (specials come first)


class TextDataset(Dataset):
    """Numericalized documents (one int array each) with their labels and vocab."""

    def __init__(self, ids: Sequence[np.ndarray], label, vocab):
        self.ids, self.label, self.vocab = list(ids), label, vocab
        self.lengths = np.array([len(d) for d in self.ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.ids[i].astype(np.int64)), self.label.target(i)

    def text(self, i: int) -> str:
        """Document `i` as space-joined tokens."""
        return self.vocab.textify(self.ids[i])


class _Epochs:
    """An epoch counter: `set_epoch` fixes it; each pass that does not follow one advances it."""

    epoch, _fixed, _used = 0, False, False

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._fixed = int(epoch), True

    def _take_epoch(self) -> int:
        if not self._fixed:
            self.epoch += int(self._used)
        self._used, self._fixed = True, False
        return self.epoch


def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


class DocSampler(_Epochs):
    """The documents one rank streams in an epoch: a token-balanced contiguous share of the permutation."""

    def __init__(self, lengths: np.ndarray, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        if world_size > 1 and 0 < len(lengths) < world_size:
            raise ConfigError(f"{len(lengths)} documents cannot be shared by {world_size} workers")
        self.lengths, self.shuffle, self.seed = np.asarray(lengths, dtype=np.int64), shuffle, seed
        self.rank, self.world_size = rank, world_size

    def shards(self, epoch: int) -> list[np.ndarray]:
        """Every rank's documents for `epoch`, in stream order (cut at document boundaries by tokens)."""
        n = len(self.lengths)
        order = _permutation(n, self.seed, epoch) if self.shuffle else np.arange(n)
        if self.world_size == 1 or n == 0:
            return [order] * self.world_size
        cum = np.cumsum(self.lengths[order])
        targets = cum[-1] * np.arange(1, self.world_size) / self.world_size
        straddle = np.searchsorted(cum, targets)  # the document that crosses each target
        before = np.where(straddle > 0, cum[np.maximum(straddle - 1, 0)], 0)
        # cut at whichever edge of that document is nearer the target: shares differ by <= one document
        cuts = np.where(targets - before < cum[straddle] - targets, straddle, straddle + 1)
        for r in range(len(cuts)):  # every shard keeps at least one document
            lo = cuts[r - 1] + 1 if r else 1
            cuts[r] = min(max(cuts[r], lo), n - (self.world_size - 1 - r))
        return np.split(order, cuts)

    def order(self) -> np.ndarray:
        """This rank's documents for the current epoch (advances the epoch unless set_epoch was called)."""
        return self.shards(self._take_epoch())[self.rank]

    def __iter__(self):
        return iter(self.order().tolist())


class LMLoader:
    """fastai's LanguageModelPreLoader: one token stream, `bs` rows, windows of `bptt` (+1 for the target).

    Row i starts at token ⌊i·total/bs⌋ of the stream; batch j holds, for every row, the tokens
    j·bptt … j·bptt+bptt as x and the same shifted by one as y, reading circularly past the stream's end
    as fastai does, so every batch is full. Batches per epoch: ⌈total/(bptt·bs)⌉; under DDP every rank
    gets ⌈total/(world·bptt·bs)⌉ batches of its own share, the same count on every rank and epoch.
    """

    def __init__(self, ds: TextDataset, bs: int, bptt: int, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, equal_batches: bool = True):
        if bs < 1 or bptt < 1:
            raise ConfigError(f"bs and bptt must be >= 1, got bs={bs}, bptt={bptt}")
        self.dataset, self.bs, self.bptt = ds, bs, bptt
        self.sampler = DocSampler(ds.lengths, shuffle, seed, rank, world_size)
        self.equal_batches = equal_batches

    def __len__(self) -> int:
        s, per_batch = self.sampler, self.bptt * self.bs
        if s.world_size > 1 and not self.equal_batches:  # fixed shards (valid): this rank's own count
            return -(-int(s.lengths[s.shards(0)[s.rank]].sum()) // per_batch)
        return -(-int(s.lengths.sum()) // (s.world_size * per_batch))

    def stream(self, order: np.ndarray) -> np.ndarray:
        """The documents `order` concatenated into one token stream."""
        if len(order) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([self.dataset.ids[i] for i in order]).astype(np.int64)

    def __iter__(self):
        n_batches = len(self)
        stream = self.stream(self.sampler.order())
        total = len(stream)
        if total == 0:
            return
        starts = np.arange(self.bs, dtype=np.int64) * total // self.bs  # (bs,)
        window = np.arange(self.bptt + 1)
        for j in range(n_batches):
            batch = torch.from_numpy(stream[(starts[:, None] + j * self.bptt + window) % total])  # (bs, bptt+1)
            yield batch[:, :-1].contiguous(), batch[:, 1:].contiguous()


class SortishSampler(_Epochs):
    """Train batches of similar lengths (fastai's SortishSampler), yielded as lists of indices.

    Permute, cut into chunks of bs·50, sort each chunk by length descending, cut into batches (the
    short last one is dropped with drop_last), put the batch holding the longest item first and shuffle
    the rest. Under DDP each rank takes every world-th index of the permutation (cut to a multiple of
    the world size), so ranks see disjoint items and the same number of batches.
    """

    def __init__(self, lengths: np.ndarray, bs: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True):
        self.lengths, self.bs, self.seed = np.asarray(lengths), bs, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last

    def _n_items(self) -> int:  # per rank
        return len(self.lengths) // self.world_size

    def __len__(self) -> int:
        n = self._n_items()
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of `epoch` for this rank."""
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(len(self.lengths))
        perm = perm[:self._n_items() * self.world_size][self.rank::self.world_size]
        chunk = self.bs * 50
        ordered = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")]
                                  for c in np.split(perm, range(chunk, len(perm), chunk))])
        batches = [ordered[i:i + self.bs].tolist() for i in range(0, len(ordered), self.bs)]
        if self.drop_last and batches and len(batches[-1]) < self.bs:
            batches.pop()
        if not batches:
            return []
        longest = int(np.argmax([self.lengths[b[0]] for b in batches]))
        batches[0], batches[longest] = batches[longest], batches[0]
        rest = [batches[i] for i in rng.permutation(len(batches) - 1) + 1]
        return [batches[0], *rest]

    def __iter__(self):
        return iter(self.batches(self._take_epoch()))


class SortSampler:
    """Valid batches by length descending (fastai's SortSampler); under DDP every world-th item of that order."""

    def __init__(self, lengths: np.ndarray, bs: int, rank: int = 0, world_size: int = 1):
        order = np.argsort(-np.asarray(lengths), kind="stable")[rank::world_size]
        self.batches = [order[i:i + bs].tolist() for i in range(0, len(order), bs)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def pad_collate(samples, pad_idx: int = PAD_IDX, pad_first: bool = True):
    """Stack (ids, target) samples into (B, max_len) ids padded with `pad_idx` (at the start by default)."""
    max_len = max(len(s[0]) for s in samples)
    xb = torch.full((len(samples), max_len), pad_idx, dtype=torch.long)
    for i, (ids, _) in enumerate(samples):
        if pad_first:
            xb[i, max_len - len(ids):] = ids
        else:
            xb[i, :len(ids)] = ids
    return xb, torch.stack([torch.as_tensor(s[1]) for s in samples])


class TextClasLoader:
    """A DataLoader over index batches from a batch sampler, with `pad_collate`; `sampler` takes set_epoch."""

    def __init__(self, ds: TextDataset, batch_sampler, pad_idx: int = PAD_IDX, pad_first: bool = True,
                 num_workers: int = 0):
        self.dataset, self.sampler = ds, batch_sampler
        self._dl = DataLoader(ds, batch_sampler=batch_sampler, num_workers=num_workers,
                              collate_fn=functools.partial(pad_collate, pad_idx=pad_idx, pad_first=pad_first),
                              persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        return iter(self._dl)
