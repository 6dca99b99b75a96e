"""Vocab: fastai v1 (>= 1.0.53) ordering, limits, padding, numericalize, JSON round trip."""
from __future__ import annotations

import json

import pytest

from raylessons.errors import DataError
from raylessons.data.tokenize import TEXT_SPEC_TOK
from raylessons.data.vocab import Vocab


def test_order_specials_then_frequency_then_first_seen():
    # counts: b 3, a 2, c 2, xxmaj 1, d 1 -> a before c (tie, seen first); d dropped by min_freq=2
    toks = [["b", "a", "b", "c", "a", "b", "xxmaj"], ["d", "c"]]
    v = Vocab.create(toks, max_vocab=60000, min_freq=2)
    assert v.itos[:12] == TEXT_SPEC_TOK + ["b", "a", "c"]
    assert v.itos[12:] == ["xxfake"] * 4  # 12 -> padded to 16
    assert len(v) == 16 and len(v) % 8 == 0


def test_tie_keeps_first_seen_order():
    v = Vocab.create([["c", "a", "a", "c"]], min_freq=1)
    assert v.itos[9:11] == ["c", "a"]


def test_frequent_special_token_is_moved_not_duplicated():
    v = Vocab.create([["xxbos", "x"]] * 5, min_freq=1)
    assert v.itos.count("xxbos") == 1 and v.itos.index("xxbos") == 2
    assert v.itos[9] == "x"


def test_min_freq_is_inclusive():
    toks = [["three"] * 3 + ["two"] * 2 + ["four"] * 4]
    assert Vocab.create(toks, min_freq=3).itos[9:11] == ["four", "three"]
    assert "two" not in Vocab.create(toks, min_freq=3).itos
    assert "two" in Vocab.create(toks, min_freq=2).itos


def test_max_vocab_counts_the_special_tokens():
    toks = [[f"w{i}"] * (20 - i) for i in range(12)]  # w0 most frequent
    v = Vocab.create(toks, max_vocab=12, min_freq=1)
    assert v.itos == TEXT_SPEC_TOK + ["w0", "w1", "w2"]  # cut to 12, no padding at max_vocab
    v = Vocab.create(toks, max_vocab=10, min_freq=1)
    assert v.itos == TEXT_SPEC_TOK + ["w0"]


def test_numericalize_textify_and_unknown():
    v = Vocab.create([["the", "movie", "the"]] * 2)
    ids = v.numericalize(["xxbos", "the", "movie", "unseen"])
    assert ids == [2, 9, 10, 0]
    assert "unseen" not in v.stoi  # looking up an unknown token does not grow stoi
    assert v.textify(ids) == "xxbos the movie xxunk"
    assert v.stoi["xxpad"] == 1


def test_json_round_trip(tmp_path):
    v = Vocab.create([["é", "ü", "é", "ü", "x"]])
    path = v.save(tmp_path / "sub" / "vocab.json")
    assert json.loads(path.read_text(encoding="utf-8"))["itos"] == v.itos
    w = Vocab.load(path)
    assert w == v and w.stoi == v.stoi
    assert w != Vocab(v.itos[:-1])


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "vocab.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="vocab.json"):
        Vocab.load(bad)
    bad.write_text(json.dumps({"itos": ["xxunk", 3]}))
    with pytest.raises(DataError, match="list of str"):
        Vocab.load(bad)
