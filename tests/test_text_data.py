"""Text data blocks on a generated IMDB look-alike: LM stream batches, sortish padded classifier batches,
vocab rules, DDP sharding, JSON save/load, the CSV factory and bad input."""
from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from raylessons.data import text as text_module
from raylessons.data.block import ImageList
from raylessons.data.bunch import DataBunch
from raylessons.data.synth.imdb import synth
from raylessons.data.text import (TextClasDataBunch, TextDataBunch, TextList, TextLMDataBunch,
                                  assert_same_vocab, check_vocab, load_data)
from raylessons.errors import ConfigError, DataError
from raylessons.metrics import CrossEntropyFlat
from raylessons.data.tokenize import TEXT_SPEC_TOK, tokenize_texts
from raylessons.data.vocab import Vocab

BS, BPTT = 4, 20


@pytest.fixture(scope="module")
def imdb(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("imdb"), n_train=40, n_test=20, n_unsup=20, n_sample=40)


@pytest.fixture(scope="module")
def lm_src(imdb):
    return (TextList.from_folder(imdb, n_workers=1).filter_by_folder(include=["train", "test", "unsup"])
            .split_by_rand_pct(0.1, seed=0).label_for_lm())


@pytest.fixture(scope="module")
def data_lm(lm_src):
    return lm_src.databunch(bs=BS, bptt=BPTT, seed=0)


@pytest.fixture(scope="module")
def clas_src(imdb, data_lm):
    return (TextList.from_folder(imdb, vocab=data_lm.vocab, n_workers=1).split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]))


@pytest.fixture(scope="module")
def data_clas(clas_src):
    return clas_src.databunch(bs=8, seed=0)


def _stream(ds, order) -> np.ndarray:
    return np.concatenate([ds.ids[i] for i in order]).astype(np.int64)


def _check_lm_batches(batches, stream, bs, bptt):
    """Every batch is the (circular) stream window of each row: row i starts at ⌊i·total/bs⌋."""
    total = len(stream)
    starts = np.arange(bs) * total // bs
    for j, (x, y) in enumerate(batches):
        assert x.shape == y.shape == (bs, bptt) and x.dtype == torch.int64
        idx = (starts[:, None] + j * bptt + np.arange(bptt)) % total
        assert np.array_equal(x.numpy(), stream[idx])
        assert np.array_equal(y.numpy(), stream[(idx + 1) % total])
        assert torch.equal(y[:, :-1], x[:, 1:])


def test_filter_split_and_vocab_from_train(imdb, lm_src, data_lm):
    assert len(TextList.from_folder(imdb).filter_by_folder(include=["train", "test", "unsup"])) == 80
    assert len(TextList.from_folder(imdb).filter_by_folder(exclude=["unsup"])) == 60
    assert (len(data_lm.train_ds), len(data_lm.valid_ds)) == (72, 8)
    tokens = lm_src.train.tokenize()  # a cache hit: the bunch tokenized under path/tmp
    assert (imdb / "tmp").is_dir()
    counts = Counter(t for doc in tokens for t in doc)
    itos = data_lm.vocab.itos
    assert itos[:len(TEXT_SPEC_TOK)] == TEXT_SPEC_TOK and len(itos) % 8 == 0
    assert data_lm.vocab == Vocab.create(tokens, max_vocab=60000, min_freq=3)  # data block default
    assert {t for t, c in counts.items() if c >= 3} <= set(itos)
    assert not {t for t, c in counts.items() if c < 3} & (set(itos) - set(TEXT_SPEC_TOK))
    for doc, ids in zip(tokens, data_lm.train_ds.ids):
        assert ids.tolist() == data_lm.vocab.numericalize(doc) and ids[0] == 2  # xxbos
    assert data_lm.label.kind == "lm" and data_lm.c == len(itos)
    assert isinstance(data_lm.loss_func, CrossEntropyFlat)
    logits = torch.randn(BS, BPTT, len(itos))
    assert data_lm.loss_func(logits, torch.randint(len(itos), (BS, BPTT))).shape == ()


def test_lm_batches_are_the_shifted_stream(data_lm):
    dl, ds = data_lm.train_dl, data_lm.train_ds
    total = int(ds.lengths.sum())
    assert len(dl) == -(-total // (BPTT * BS))
    orders = []
    for epoch in (0, 1):
        dl.sampler.set_epoch(epoch)
        order = dl.sampler.shards(epoch)[0]
        assert sorted(order.tolist()) == list(range(len(ds)))
        batches = list(dl)
        assert len(batches) == len(dl)
        _check_lm_batches(batches, _stream(ds, order), BS, BPTT)
        assert batches[0][0][:, 0].tolist() == _stream(ds, order)[np.arange(BS) * total // BS].tolist()
        orders.append(order.tolist())
    assert orders[0] != orders[1]  # each epoch shuffles differently
    # without set_epoch every pass moves on to the next epoch
    first = next(iter(dl))[0]
    assert not torch.equal(first, next(iter(dl))[0])


def test_lm_valid_stays_in_order(data_lm):
    dl, ds = data_lm.valid_dl, data_lm.valid_ds
    stream = _stream(ds, range(len(ds)))
    assert len(dl) == -(-len(stream) // (BPTT * BS))
    one, two = list(dl), list(dl)
    _check_lm_batches(one, stream, BS, BPTT)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one, two))


def test_lm_distributed_ranks_are_disjoint_and_equal_length(lm_src, data_lm):
    ranks = [lm_src.databunch(bs=BS, bptt=BPTT).distributed(r, 2, seed=7) for r in range(2)]
    n_docs, max_len = len(data_lm.train_ds), int(data_lm.train_ds.lengths.max())
    assert len(ranks[0].train_dl) == len(ranks[1].train_dl) > 0
    for epoch in (0, 1):
        orders = []
        for data in ranks:
            dl = data.train_dl
            dl.sampler.set_epoch(epoch)
            order = dl.sampler.shards(epoch)[data.rank]
            batches = list(dl)
            assert len(batches) == len(dl)
            _check_lm_batches(batches, _stream(data.train_ds, order), BS, BPTT)
            orders.append(order.tolist())
        assert not set(orders[0]) & set(orders[1])
        assert sorted(orders[0] + orders[1]) == list(range(n_docs))
        totals = [int(data_lm.train_ds.lengths[o].sum()) for o in orders]
        assert abs(totals[0] - totals[1]) <= max_len  # cut at document boundaries, balanced by tokens
    valid = [set(d.valid_dl.sampler.order().tolist()) for d in ranks]
    assert not valid[0] & valid[1] and len(valid[0] | valid[1]) == len(data_lm.valid_ds)


def test_learner_trains_on_text_bunches(data_lm, data_clas):
    from raylessons.learner import Learner

    class Pool(nn.Module):
        def forward(self, x):  # (B, T, E) -> (B, E)
            return x.mean(1)

    for data, model in ((data_lm, nn.Sequential(nn.Embedding(len(data_lm.vocab), 8), nn.Linear(8, data_lm.c))),
                        (data_clas, nn.Sequential(nn.Embedding(len(data_clas.vocab), 8), Pool(),
                                                  nn.Linear(8, data_clas.c)))):
        learn = Learner(data, model, device="cpu")
        learn.fit(1, 1e-2)
        loss, _ = learn.last_validation
        assert np.isfinite(loss)


def test_classifier_valid_sorted_padded_at_start(data_clas):
    ds = data_clas.valid_ds
    assert data_clas.label.kind == "category" and data_clas.classes == ["neg", "pos"]
    assert data_clas.vocab is data_clas.train_ds.vocab and isinstance(data_clas.loss_func, CrossEntropyFlat)
    rows, targets = [], []
    for xb, yb in data_clas.valid_dl:
        for x in xb:
            pad = (x == 1).numpy()
            n_pad = int(pad.sum())
            assert pad[:n_pad].all() and not pad[n_pad:].any()  # xxpad only at the start
            rows.append(x[n_pad:].numpy())
        targets += yb.tolist()
    assert [len(b[0]) for b in data_clas.valid_dl] == [8, 8, 4]  # valid keeps its last partial batch
    lengths = [len(r) for r in rows]
    assert lengths == sorted(lengths, reverse=True)
    order = np.argsort(-ds.lengths, kind="stable")
    assert sorted(order.tolist()) == list(range(len(ds)))  # every item exactly once
    for row, i, y in zip(rows, order, targets):
        assert np.array_equal(row, ds.ids[i]) and y == int(ds.label.target(i))


def test_classifier_sortish_train(clas_src):
    data = clas_src.databunch(bs=6, seed=3)
    dl, ds = data.train_dl, data.train_ds
    assert len(dl) == 40 // 6  # drop_last
    epochs = []
    for epoch in (0, 1):
        dl.sampler.set_epoch(epoch)
        batches = dl.sampler.batches(epoch)
        idxs = [i for b in batches for i in b]
        assert all(len(b) == 6 for b in batches) and len(idxs) == len(set(idxs)) == 36
        for b in batches:
            lens = ds.lengths[b].tolist()
            assert lens == sorted(lens, reverse=True)
        assert ds.lengths[batches[0][0]] == ds.lengths[idxs].max()  # the longest batch comes first
        for (xb, yb), b in zip(dl, batches):
            assert xb.shape == (6, ds.lengths[b].max())
            for x, i in zip(xb, b):
                assert np.array_equal(x[len(x) - ds.lengths[i]:].numpy(), ds.ids[i])
            assert yb.tolist() == [int(ds.label.target(i)) for i in b]
        epochs.append(batches)
    assert epochs[0] != epochs[1]


def test_classifier_distributed_shards(clas_src):
    ranks = [clas_src.databunch(bs=4).distributed(r, 2, seed=5) for r in range(2)]
    assert len(ranks[0].train_dl) == len(ranks[1].train_dl) == 20 // 4
    seen = [{i for b in d.train_dl.sampler.batches(0) for i in b} for d in ranks]
    assert not seen[0] & seen[1] and len(seen[0]) == len(seen[1]) == 20
    assert seen[0] != {i for b in ranks[0].train_dl.sampler.batches(1) for i in b}  # reshuffled per epoch
    valid = [{i for b in d.valid_dl.sampler for i in b} for d in ranks]
    assert not valid[0] & valid[1] and valid[0] | valid[1] == set(range(20))
    assert [len(d.valid_dl) for d in ranks] == [3, 3]  # 10 valid items each, val_bs 4


def test_save_load_round_trip_without_tokenizing(data_lm, data_clas, monkeypatch):
    data_lm.save("data_lm.json")
    data_clas.save("data_clas.json")
    assert json.loads((data_lm.path / "data_lm.json").read_text())["label_kind"] == "lm"

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("load_data must not tokenize")

    monkeypatch.setattr(text_module, "tokenize_texts", no_tokenizing)
    lm = load_data(data_lm.path, "data_lm.json", bs=BS, seed=0)
    assert isinstance(lm, TextLMDataBunch) and lm.bptt == BPTT and lm.vocab == data_lm.vocab
    for a, b in ((lm.train_ds, data_lm.train_ds), (lm.valid_ds, data_lm.valid_ds)):
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a.ids, b.ids))
    for loader, orig in ((lm.train_dl, data_lm.train_dl), (lm.valid_dl, data_lm.valid_dl)):
        loader.sampler.set_epoch(0)
        orig.sampler.set_epoch(0)
        assert all(torch.equal(x1, x2) and torch.equal(y1, y2)
                   for (x1, y1), (x2, y2) in zip(loader, orig))
    clas = load_data(data_clas.path, "data_clas.json", bs=8)
    assert isinstance(clas, TextClasDataBunch) and clas.classes == ["neg", "pos"]
    check_vocab(clas, data_lm)
    assert clas.valid_ds.label.raw == data_clas.valid_ds.label.raw
    assert torch.equal(clas.one_batch()[0], data_clas.one_batch()[0])
    with pytest.raises(DataError, match="missing.json"):
        load_data(data_lm.path, "missing.json")


def test_from_csv_uses_is_valid(imdb):
    path = imdb / "imdb_sample"
    df = pd.read_csv(path / "texts.csv")
    data = TextDataBunch.from_csv(path, "texts.csv", n_workers=1)
    assert isinstance(data, TextClasDataBunch) and data.bs == 32
    assert df.is_valid.tolist() == [False] * 32 + [True] * 8
    assert (len(data.train_ds), len(data.valid_ds)) == (32, 8)
    assert data.valid_ds.label.raw == df.label[32:].tolist() and data.classes == ["negative", "positive"]
    train_tokens = tokenize_texts(df.text[:32].tolist(), 1, path / "tmp")
    assert data.vocab == Vocab.create(train_tokens, min_freq=2)  # the factories' min_freq
    block = (TextList.from_csv(path, "texts.csv", cols="text", n_workers=1).split_from_df(col=2)
             .label_from_df(cols=0).databunch())
    assert isinstance(block, TextClasDataBunch) and block.valid_ds.label.raw == df.label[32:].tolist()
    assert block.vocab == Vocab.create(train_tokens, min_freq=3)
    lm = TextLMDataBunch.from_csv(path, "texts.csv", n_workers=1, bs=BS)
    assert isinstance(lm, TextLMDataBunch) and lm.label.kind == "lm" and len(lm.valid_ds) == 8


def test_empty_texts_raise_naming_file_or_row(tmp_path):
    (tmp_path / "train" / "pos").mkdir(parents=True)
    (tmp_path / "train" / "pos" / "0_9.txt").write_text("A fine film .")
    (tmp_path / "train" / "pos" / "1_8.txt").write_text("  \n ")
    src = TextList.from_folder(tmp_path, n_workers=1).split_none().label_for_lm()
    with pytest.raises(DataError, match="1_8.txt"):
        src.databunch(bs=2)
    pd.DataFrame({"label": ["pos", "neg"], "text": ["good", ""]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"t.csv:row 3"):
        TextList.from_csv(tmp_path, "t.csv")


def test_invalid_utf8_is_replaced_and_warned_once(tmp_path, caplog):
    (tmp_path / "unsup").mkdir()
    (tmp_path / "unsup" / "0_0.txt").write_bytes(b"Caf\xe9 was great .")
    (tmp_path / "unsup" / "1_0.txt").write_bytes(b"Fine \xff\xfe movie .")
    (tmp_path / "unsup" / "2_0.txt").write_text("Plain text .")
    with caplog.at_level(logging.WARNING):
        texts = TextList.from_folder(tmp_path).read_texts()
    assert "\ufffd" in texts[0] and "\ufffd" in texts[1] and texts[2] == "Plain text ."
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "2 text file(s)" in warnings[0] and "0_0.txt" in warnings[0]


def test_vocab_mismatch_raises_config_error(imdb, clas_src, data_lm, data_clas):
    with pytest.raises(ConfigError, match=r"3 tokens.*4.*position 1: 'b' vs 'x'"):
        assert_same_vocab(Vocab(["a", "b", "c"]), Vocab(["a", "x", "c", "d"]))
    with pytest.raises(ConfigError, match=r"position 3: <end> vs 'd'"):
        assert_same_vocab(["a", "b", "c"], ["a", "b", "c", "d"])
    check_vocab(data_clas, data_lm)
    check_vocab(data_clas, data_lm.vocab)
    own = (TextList.from_folder(imdb, n_workers=1).split_by_folder(valid="test")
           .label_from_folder(classes=["neg", "pos"]).databunch(bs=8))
    with pytest.raises(ConfigError, match="vocab mismatch"):
        check_vocab(own, data_lm)


def test_export_meta_and_show_batch(data_lm, data_clas, capsys):
    lm, clas = data_lm.export_meta(), data_clas.export_meta()
    json.dumps(lm), json.dumps(clas)
    assert lm["label_kind"] == "lm" and lm["bptt"] == BPTT and lm["vocab_size"] == len(data_lm.vocab)
    assert clas["label_kind"] == "category" and clas["classes"] == ["neg", "pos"]
    assert clas["itos"] == data_lm.vocab.itos and clas["pad_idx"] == 1 and clas["pad_first"] is True
    table = data_clas.show_batch(rows=3)
    assert list(table.columns) == ["text", "target"] and len(table) == 3
    assert table.text[0].startswith("xxbos") and "xxpad" not in " ".join(table.text)
    assert set(table.target) <= {"neg", "pos"} and "xxbos" in capsys.readouterr().out
    assert list(data_lm.show_batch(rows=2, show=False).columns) == ["idx", "text"]


def test_label_for_lm_needs_text_and_images_keep_their_bunch(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "cat").mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "cat" / f"{name}.png")
    split = ImageList.from_folder(tmp_path).split_none()
    with pytest.raises(ConfigError, match="TextList"):
        split.label_for_lm()
    data = split.label_from_folder().databunch()
    assert type(data) is DataBunch and data.val_bs == 64  # the image default bs is unchanged
