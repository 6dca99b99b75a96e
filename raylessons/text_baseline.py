"""Honest baselines for the ULMFiT lesson: an order-blind bag-of-words classifier and a unigram LM.

`bag_of_words_accuracy` is what a text classifier must beat to show that it reads word *order*: a
multinomial logistic regression on unigram counts, which sees which tokens a text holds and how often,
but not where. Exactly:

- features: for every text, the count of each token id in [0, vocab_size) (every id counts, special
  tokens such as xxbos / xxmaj / xxunk included; ids outside the range raise), transformed to
  log(1 + count) and scaled to unit L2 norm per text (no idf weighting). No n-grams: "not good" and
  "good" differ only by the count of "not".
- model: softmax regression (one weight per token and class, plus a bias per class), which for two
  classes is logistic regression, fitted full-batch with L-BFGS (strong Wolfe line search) for at most
  `epochs` iterations on the mean cross-entropy plus ``l2 / 2 * ||W||²`` (the bias is not penalised).
- ``l2="auto"`` (the default) picks the penalty from `L2_GRID` on a seeded 20% hold-out of the train
  texts, then refits on all of them; the validation texts are never used to choose anything.
- result: the share of validation texts whose arg-max class is their label.
- small problems (< 200k non-zero features) are fitted on one torch thread, restored afterwards: there
  thread hand-offs cost more than the arithmetic, and far more on a busy machine.

`unigram_accuracy` is the language-model floor: the next-token accuracy of always predicting the most
frequent train token. The streams are concatenated (lists of documents are joined in order, as the LM
loader does), every validation token after the first is a target, and nothing is ignored (xxbos,
punctuation and xxunk count like any token); ties for the most frequent token go to the lowest id.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["bag_of_words_accuracy", "bag_of_words_features", "unigram_accuracy", "L2_GRID"]

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)  # candidate penalties for l2="auto"


def _as_array(ids) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    return np.asarray(ids, dtype=np.int64).reshape(-1)


def bag_of_words_features(ids: Sequence, vocab_size: int) -> torch.Tensor:
    """(n_texts, vocab_size) sparse COO float32 tensor: log(1 + counts), each row of unit L2 norm."""
    if vocab_size < 1:
        raise ConfigError(f"vocab_size must be >= 1, got {vocab_size}")
    rows, cols, vals = [], [], []
    for r, doc in enumerate(ids):
        doc = _as_array(doc)
        if doc.size and (doc.min() < 0 or doc.max() >= vocab_size):
            raise ConfigError(f"text {r} has token ids outside [0, {vocab_size})")
        tok, cnt = np.unique(doc, return_counts=True)
        val = np.log1p(cnt.astype(np.float64))
        norm = np.sqrt((val ** 2).sum())
        if norm > 0:
            val = val / norm
        rows.append(np.full(len(tok), r, dtype=np.int64))
        cols.append(tok)
        vals.append(val)
    n = len(rows)
    if n == 0:
        return torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (0, vocab_size))
    index = torch.from_numpy(np.stack([np.concatenate(rows), np.concatenate(cols)]))
    values = torch.from_numpy(np.concatenate(vals).astype(np.float32))
    return torch.sparse_coo_tensor(index, values, (n, vocab_size), check_invariants=False).coalesce()


@contextmanager
def _threads_for(x: torch.Tensor):
    """One thread for small problems: there, thread hand-offs cost more than the arithmetic."""
    before = torch.get_num_threads()
    small = x._nnz() < 200_000
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def _fit(x: torch.Tensor, y: torch.Tensor, n_class: int, l2: float, max_iter: int) -> tuple[torch.Tensor, ...]:
    w = torch.zeros(x.shape[1], n_class, requires_grad=True)
    b = torch.zeros(n_class, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-6,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(torch.sparse.mm(x, w) + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _acc(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    with torch.no_grad():
        return float(((torch.sparse.mm(x, w) + b).argmax(1) == y).float().mean())


def _labels(labels, n: int, name: str) -> torch.Tensor:
    y = torch.as_tensor(_as_array(labels))
    if len(y) != n:
        raise ConfigError(f"{name}: {len(y)} labels for {n} texts")
    if len(y) and y.min() < 0:
        raise ConfigError(f"{name}: labels must be class indices >= 0")
    return y


def bag_of_words_accuracy(train_ids: Sequence, train_labels, valid_ids: Sequence, valid_labels,
                          vocab_size: int, epochs: int = 100, seed: int = 0, l2: float | str = "auto") -> float:
    """Validation accuracy of unigram logistic regression (see the module docstring for every detail).

    `*_ids`: one sequence of token ids per text (lists, numpy arrays or tensors); `*_labels`: class
    indices; `epochs`: L-BFGS iterations per fit; `seed`: the hold-out split of l2="auto".
    """
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    x_tr, x_va = bag_of_words_features(train_ids, vocab_size), bag_of_words_features(valid_ids, vocab_size)
    with _threads_for(x_tr):
        return _bag_of_words(x_tr, train_labels, x_va, valid_labels, epochs, seed, l2)


def _bag_of_words(x_tr, train_labels, x_va, valid_labels, epochs, seed, l2) -> float:
    y_tr = _labels(train_labels, x_tr.shape[0], "train")
    y_va = _labels(valid_labels, x_va.shape[0], "valid")
    if len(y_tr) == 0:
        raise ConfigError("no train texts")
    n_class = int(max(int(y_tr.max()), int(y_va.max()) if len(y_va) else 0)) + 1
    n_class = max(n_class, 2)
    if l2 == "auto":
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(y_tr), generator=gen)
        n_hold = max(1, len(y_tr) // 5)
        if len(y_tr) - n_hold < 1:
            raise ConfigError("l2='auto' needs at least 2 train texts")
        hold, fit = perm[:n_hold], perm[n_hold:]
        x_fit, x_hold = x_tr.index_select(0, fit), x_tr.index_select(0, hold)  # sparse row selection
        scores = [(_acc(x_hold, y_tr[hold], *_fit(x_fit, y_tr[fit], n_class, c, epochs)), c) for c in L2_GRID]
        l2 = max(scores)[1]  # best hold-out accuracy; ties go to the stronger penalty
    elif not isinstance(l2, (int, float)) or l2 < 0:
        raise ConfigError(f"l2 must be 'auto' or a number >= 0, got {l2!r}")
    w, b = _fit(x_tr, y_tr, n_class, float(l2), epochs)
    return _acc(x_va, y_va, w, b)


def unigram_accuracy(train_stream_ids, valid_stream_ids) -> float:
    """Next-token accuracy on the valid stream of always predicting the most frequent train token."""
    train, valid = _stream(train_stream_ids), _stream(valid_stream_ids)
    if train.size == 0:
        raise ConfigError("the train stream is empty")
    if valid.size < 2:
        raise ConfigError("the valid stream needs at least 2 tokens (one target)")
    if train.min() < 0:
        raise ConfigError("token ids must be >= 0")
    mode = int(np.bincount(train).argmax())  # argmax: ties go to the lowest id
    return float((valid[1:] == mode).mean())


def _stream(ids) -> np.ndarray:
    """A flat id array from one stream (1-D) or a list of documents (concatenated in order)."""
    if isinstance(ids, torch.Tensor) or (isinstance(ids, np.ndarray) and ids.dtype != object):
        return _as_array(ids)
    ids = list(ids)
    if ids and all(np.ndim(d) == 0 for d in ids):  # a plain list of ints
        return np.asarray(ids, dtype=np.int64)
    return np.concatenate([_as_array(d) for d in ids]) if ids else np.zeros(0, dtype=np.int64)
