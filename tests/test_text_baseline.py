"""Baselines on hand-made data whose answer is known: keyword sets, random labels, token shares."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raylessons.errors import ConfigError
from raylessons.text_baseline import bag_of_words_accuracy, bag_of_words_features, unigram_accuracy

V = 50


def _keyword_docs(n: int, rng: np.random.Generator):
    """Filler ids 10..49 plus one class keyword (ids 2-4 for class 0, 5-7 for class 1) somewhere."""
    docs, labels = [], []
    for _ in range(n):
        y = int(rng.integers(2))
        doc = list(rng.integers(10, V, size=int(rng.integers(5, 20))))
        doc.insert(int(rng.integers(len(doc) + 1)), int(rng.integers(2, 5) + 3 * y))
        docs.append(np.array(doc)), labels.append(y)
    return docs, labels


def test_separable_keywords_give_full_accuracy():
    rng = np.random.default_rng(0)
    tr, ytr = _keyword_docs(200, rng)
    va, yva = _keyword_docs(100, rng)
    assert bag_of_words_accuracy(tr, ytr, va, yva, V) == pytest.approx(1.0)
    # tensors and lists work the same as arrays, and a fixed penalty too
    acc = bag_of_words_accuracy([torch.as_tensor(d) for d in tr], torch.tensor(ytr), [list(d) for d in va], yva,
                                V, l2=1e-4)
    assert acc == pytest.approx(1.0)


def test_random_labels_give_chance():
    rng = np.random.default_rng(1)
    tr = [rng.integers(0, V, size=15) for _ in range(300)]
    va = [rng.integers(0, V, size=15) for _ in range(400)]
    acc = bag_of_words_accuracy(tr, rng.integers(2, size=300), va, rng.integers(2, size=400), V)
    assert 0.4 < acc < 0.6


def test_bag_of_words_is_blind_to_order():
    """'not good' vs 'good not': same tokens, opposite labels -> nothing to learn beyond chance."""
    rng = np.random.default_rng(2)

    def docs(n):
        out, ys = [], []
        for _ in range(n):
            y = int(rng.integers(2))
            pair = [3, 4] if y else [4, 3]
            out.append(np.array(list(rng.integers(10, V, size=5)) + pair)), ys.append(y)
        return out, ys

    (tr, ytr), (va, yva) = docs(200), docs(200)
    assert 0.38 < bag_of_words_accuracy(tr, ytr, va, yva, V) < 0.62


def test_features_are_log_counts_with_unit_norm():
    x = bag_of_words_features([[1, 1, 1, 2], [0]], 4).to_dense()
    a, b = np.log(4), np.log(2)
    np.testing.assert_allclose(x[0].numpy(), [0, a, b, 0] / np.hypot(a, b), rtol=1e-6)
    np.testing.assert_allclose(x[1].numpy(), [1, 0, 0, 0])
    with pytest.raises(ConfigError):
        bag_of_words_features([[0, 4]], 4)


def test_unigram_is_the_share_of_the_most_common_train_token():
    train = [5, 5, 5, 1, 2]
    valid = [9, 5, 1, 5, 5, 2]  # targets: 5 1 5 5 2 -> 3 of 5 are 5
    assert unigram_accuracy(train, valid) == pytest.approx(0.6)
    # documents are joined into one stream; tensors / arrays work too
    assert unigram_accuracy([np.array([5, 5]), np.array([5, 1, 2])], torch.tensor(valid)) == pytest.approx(0.6)
    # the most common *train* token, not the valid one
    assert unigram_accuracy([1, 1, 1], valid) == pytest.approx(0.2)
    rng = np.random.default_rng(3)
    stream = rng.choice(10, size=20001, p=[0.3] + [0.7 / 9] * 9)
    assert unigram_accuracy(stream, stream) == pytest.approx(np.mean(stream[1:] == 0))
    with pytest.raises(ConfigError):
        unigram_accuracy([], valid)
