"""IMDB look-alike: layout, balance, determinism, and that sentiment needs word order."""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

from raylessons.data.synth import imdb
from raylessons.data.synth import synth as synth_dataset

NAME = re.compile(r"^(\d+)_(\d+)\.txt$")


def _read(folder: Path) -> list[tuple[str, int]]:
    """(text, +1/-1) for every review under folder/{pos,neg}."""
    return [(p.read_text(encoding="utf-8"), 1 if label == "pos" else -1)
            for label in ("pos", "neg") for p in sorted((folder / label).glob("*.txt"))]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return imdb.synth(tmp_path_factory.mktemp("imdb"), n_train=600, n_test=600, n_unsup=10, n_sample=50)


def test_layout_and_balance(tmp_path):
    root = synth_dataset("imdb", tmp_path / "imdb", n_train=21, n_test=10, n_unsup=6, n_sample=10, seed=3)
    for split, n in (("train", 21), ("test", 10)):
        pos, neg = sorted((root / split / "pos").iterdir()), sorted((root / split / "neg").iterdir())
        assert (len(pos), len(neg)) == (n // 2, n - n // 2)
        assert {int(NAME.match(p.name)[2]) for p in pos} <= set(range(7, 11))
        assert {int(NAME.match(p.name)[2]) for p in neg} <= set(range(1, 5))
        assert sorted(int(NAME.match(p.name)[1]) for p in pos) == list(range(n // 2))
    assert sorted(p.name for p in (root / "unsup").iterdir()) == sorted(f"{i}_0.txt" for i in range(6))
    df = pd.read_csv(root / "imdb_sample" / "texts.csv")
    assert list(df.columns) == ["label", "text", "is_valid"]
    assert df["is_valid"].dtype == bool and df["is_valid"].tolist() == [False] * 8 + [True] * 2
    assert Counter(df["label"]) == {"positive": 5, "negative": 5}


def test_deterministic(tmp_path):
    def snapshot(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    a = snapshot(imdb.synth(tmp_path / "a", n_train=8, n_test=4, n_unsup=2, n_sample=5, seed=1))
    b = snapshot(imdb.synth(tmp_path / "b", n_train=8, n_test=4, n_unsup=2, n_sample=5, seed=1))
    c = snapshot(imdb.synth(tmp_path / "c", n_train=8, n_test=4, n_unsup=2, n_sample=5, seed=2))
    assert a == b
    assert a.keys() != c.keys() or a != c


def test_looks_like_imdb(data):
    texts = [t for t, _ in _read(data / "train")]
    joined = "\n".join(texts)
    pieces = ("<br /><br />", "&amp;", "&#39;", "&quot;", " not ", " but ", "sooooo", "very very very very")
    for piece in pieces:
        assert piece in joined, piece
    assert re.search(r"\b[A-Z]{4,}\b", joined)  # shouting
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) < 60 and max(lengths) > 300 and sum(n > 300 for n in lengths) >= 10
    assert len(set(texts)) == len(texts)


WORD = re.compile(r"n't|[a-z]+")


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("n't", " n't"))


def _bow_test_accuracy(train, test) -> float:
    """Logistic regression on log word counts (order ignored); the best of three L2 strengths."""
    counts = Counter(w for t, _ in train for w in set(_words(t)))
    vocab = {w: i for i, w in enumerate(w for w, c in counts.items() if c >= 2)}

    def features(rows):
        x = [[0.0] * len(vocab) for _ in rows]
        for r, (t, _) in enumerate(rows):
            for w in _words(t):
                if w in vocab:
                    x[r][vocab[w]] += 1
        return torch.log1p(torch.tensor(x)), torch.tensor([float(y == 1) for _, y in rows])

    (xtr, ytr), (xte, yte) = features(train), features(test)
    best = 0.0
    for wd in (1e-4, 1e-3, 1e-2):
        # full-batch gradient descent with momentum on the (convex) logistic loss; torch.optim is
        # avoided because its first use imports torch._dynamo, which takes seconds
        w, b, vw, vb = torch.zeros(len(vocab)), torch.zeros(()), torch.zeros(len(vocab)), torch.zeros(())
        for _ in range(300):
            err = torch.sigmoid(xtr @ w + b) - ytr
            vw = 0.9 * vw + xtr.T @ err / len(ytr) + wd * w
            vb = 0.9 * vb + err.mean()
            w, b = w - 0.5 * vw, b - 0.5 * vb
        best = max(best, (((xte @ w + b) > 0).float() == yte).float().mean().item())
    return best


DECOY = re.compile(r"could not have been more|have never seen anything so|no denying")
CLAUSES = re.compile(r"(?<!anything) but |;|,| yet ")


def _clause_polarity(clause: str) -> int:
    """The last sentiment word's polarity, flipped by an odd number of negators before it."""
    toks = _words(clause)
    for j in range(len(toks) - 1, -1, -1):
        pol = 1 if toks[j] in imdb.POS_WORDS else -1 if toks[j] in imdb.NEG_WORDS else 0
        if pol:
            if DECOY.search(clause):
                return pol
            return pol if sum(t in imdb.NEGATORS for t in toks[:j]) % 2 == 0 else -pol
    return 0


def _order_aware_score(text: str) -> int:
    """Sum of sentence polarities (last clause decides; verdicts count 3 times)."""
    total = 0
    for sent in re.split(r"(?<=[.!])\s+(?=\S)", text.lower().replace("<br />", " ")):
        clauses = [c for c in CLAUSES.split(sent) if _clause_polarity(c)]
        if clauses:
            verdict = any(sent.startswith(m) for m in imdb.VERDICT_MARKERS)
            total += (3 if verdict else 1) * _clause_polarity(clauses[-1])
    return 1 if total > 0 else -1


def test_word_order_carries_the_signal(data):
    train, test = _read(data / "train"), _read(data / "test")
    bow = _bow_test_accuracy(train, test)
    rule = sum(_order_aware_score(t) == y for t, y in test) / len(test)
    print(f"bag-of-words test accuracy {bow:.3f}, order-aware rule {rule:.3f}")
    assert bow <= 0.80
    assert rule >= 0.95


def test_corpus_layout(tmp_path):
    root = imdb.synth_corpus(tmp_path / "corpus", n_docs=20, seed=0)
    train, valid = sorted((root / "train").glob("*.txt")), sorted((root / "valid").glob("*.txt"))
    assert (len(train), len(valid)) == (18, 2)
    text = train[0].read_text(encoding="utf-8")
    assert len(text.split()) > 20 and "<br />" not in text
    again = imdb.synth_corpus(tmp_path / "again", n_docs=20, seed=0)
    assert (again / "train" / "0.txt").read_text(encoding="utf-8") == text


def test_cli_arguments_feed_synth(tmp_path):
    parser = argparse.ArgumentParser()
    imdb.add_cli_arguments(parser)
    args = parser.parse_args("--n-train 4 --n-test 2 --n-unsup 0 --n-sample 0 --seed 5".split())
    root = imdb.synth(tmp_path / "cli", **vars(args))
    assert len(list((root / "train").rglob("*.txt"))) == 4 and len(list((root / "test").rglob("*.txt"))) == 2
    with pytest.raises(ValueError, match="n_train"):
        imdb.synth(tmp_path / "bad", n_train=-1)
