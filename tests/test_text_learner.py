"""ULMFiT learners: LM fine-tuning, generation, encoder hand-over, gradual unfreezing, pretrained weights, export."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from raylessons.data.text import TextList
from raylessons.errors import ConfigError, DataError
from raylessons.learner import load_learner
from raylessons.text_learner import (AWD_LSTM, decode_spec, language_model_learner, resolve_pretrained,
                                     text_classifier_learner)

SMALL = dict(emb_sz=16, n_hid=32, n_layers=3)


@pytest.fixture(scope="module")
def imdb(tmp_path_factory) -> Path:
    from raylessons.data.synth.imdb import synth

    return synth(tmp_path_factory.mktemp("imdb"), n_train=60, n_test=40, n_unsup=20, n_sample=10)


@pytest.fixture(scope="module")
def data_lm(imdb):
    return (TextList.from_folder(imdb).filter_by_folder(include=["train", "test", "unsup"])
            .split_by_rand_pct(0.1, seed=0).label_for_lm().databunch(bs=8, bptt=20))


def _data_clas(imdb, vocab):
    return (TextList.from_folder(imdb, vocab=vocab).split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]).databunch(bs=8))


def test_lm_trains_generates_and_saves_its_encoder(data_lm, imdb, tmp_path):
    torch.manual_seed(0)
    learn = language_model_learner(data_lm, AWD_LSTM, config=SMALL, drop_mult=0.3, path=tmp_path)
    assert len(learn.layer_groups) == 4 and learn.model_meta["kind"] == "awd_lstm_lm"
    learn.fit_one_cycle(1, 1e-2, moms=(0.8, 0.7))
    loss, (acc,) = learn.validate()
    assert loss == pytest.approx(learn.recorder.val_losses[-1]) and 0 < acc < 1
    text = learn.predict("I liked this movie because", n_words=6, seed=1)
    # 6 sampled tokens; markup tokens (xxmaj, xxup, ...) fold into the word they mark
    assert text.startswith("I liked this movie because ") and 1 <= len(text.split()) - 5 <= 6
    assert learn.predict("I liked this movie because", n_words=6, seed=1) == text  # seeded sampling
    enc = learn.save_encoder("fine_tuned_enc")
    assert enc == tmp_path / "models" / "fine_tuned_enc.pth" and enc.with_suffix(".vocab.json").is_file()
    assert not any(k.startswith(("0.", "1.")) for k in torch.load(enc, weights_only=True))


def test_classifier_loads_the_encoder_and_unfreezes_gradually(data_lm, imdb, tmp_path):
    lm = language_model_learner(data_lm, AWD_LSTM, config=SMALL, path=tmp_path)
    lm.save_encoder("enc")
    clas = text_classifier_learner(_data_clas(imdb, data_lm.vocab), AWD_LSTM, config=SMALL, drop_mult=0.5,
                                   path=tmp_path)
    assert len(clas.layer_groups) == 5
    clas.load_encoder("enc")
    enc_lm, enc_clas = lm.model[0], clas.model[0].module
    assert torch.equal(enc_lm.encoder.weight, enc_clas.encoder.weight)
    assert torch.equal(enc_lm.rnns[2].weight_hh_l0_raw, enc_clas.rnns[2].weight_hh_l0_raw)

    def trainable():  # per group: all, none, or "bn" (only BatchNorm layers, which freezing keeps trainable)
        out = []
        for group in clas.layer_groups:
            flags = [p.requires_grad for p in group.parameters()]
            out.append("all" if all(flags) else "none" if not any(flags) else "bn")
        return out

    assert trainable() == ["none", "none", "none", "none", "all"]  # load_encoder freezes
    clas.freeze_to(-2)
    assert trainable() == ["none", "none", "none", "all", "all"]
    clas.freeze_to(-3)
    assert trainable() == ["none", "none", "all", "all", "all"]
    clas.unfreeze()
    assert trainable() == ["all"] * 5
    lrs = clas.lr_range(slice(1e-2 / 2.6 ** 4, 1e-2))
    assert lrs.tolist() == pytest.approx([2.188e-4, 5.690e-4, 1.479e-3, 3.846e-3, 1e-2], rel=1e-3)
    clas.fit_one_cycle(1, slice(1e-3 / 2.6 ** 4, 1e-3), moms=(0.8, 0.7))

    label, idx, probs = clas.predict("I really loved that movie, it was awesome!")
    assert label in ("neg", "pos") and probs.shape == (2,) and probs.sum().item() == pytest.approx(1, abs=1e-5)
    export = clas.export(tmp_path / "export")
    meta = json.loads((export / "meta.json").read_text())
    assert meta["itos"] == data_lm.vocab.itos and meta["classes"] == ["neg", "pos"]
    again = load_learner(export).predict("I really loved that movie, it was awesome!")
    assert again[0] == label and torch.allclose(again[2], probs, atol=1e-6)
    with pytest.raises(DataError, match="empty text"):
        clas.predict("   ")


def test_an_encoder_from_another_vocab_is_refused(data_lm, imdb, tmp_path):
    lm = language_model_learner(data_lm, AWD_LSTM, config=SMALL, path=tmp_path)
    lm.save_encoder("enc")
    other = (TextList.from_folder(imdb).split_by_folder(valid="test")
             .label_from_folder(classes=["neg", "pos"]).databunch(bs=8))  # its own vocab, built from train only
    clas = text_classifier_learner(other, AWD_LSTM, config=SMALL, path=tmp_path)
    with pytest.raises(ConfigError, match="another vocab.*first differ at id"):
        clas.load_encoder("enc")


def test_pretrained_fastai_checkpoint_is_mapped_onto_the_new_vocab(data_lm, tmp_path):
    """A wt103-style folder: one .pth with fastai's key names and an itos file in another token order."""
    torch.manual_seed(0)
    source = language_model_learner(data_lm, AWD_LSTM, config=SMALL)
    itos = list(data_lm.vocab.itos)
    old_itos = itos[:9] + itos[9:][::-1] + ["zzz_unseen"]  # same specials, words reversed, one extra word
    old_index = {t: i for i, t in enumerate(old_itos)}
    state = {k: v.clone() for k, v in source.model.state_dict().items()}
    for key in ("0.encoder.weight", "0.encoder_dp.emb.weight", "1.decoder.weight", "1.decoder.bias"):
        rows = state[key]
        extra = rows.mean(0, keepdim=True)
        state[key] = torch.cat([rows[[itos.index(t) for t in old_itos[:-1]]], extra])
        assert state[key].shape[0] == len(old_itos) and old_index["zzz_unseen"] == len(old_itos) - 1
    folder = tmp_path / "wt103-fwd"
    folder.mkdir()
    torch.save({"model": state}, folder / "lstm_fwd.pth")
    (folder / "itos_wt103.json").write_text(json.dumps(old_itos))
    weights, found_itos = resolve_pretrained(folder)
    assert weights.name == "lstm_fwd.pth" and found_itos == old_itos

    learn = language_model_learner(data_lm, AWD_LSTM, config=SMALL, pretrained=folder)
    real = [i for i, t in enumerate(itos) if t != "xxfake"]  # the vocab's padding tokens share one name
    assert len(real) > 100
    assert torch.equal(learn.model[0].encoder.weight[real], source.model[0].encoder.weight[real])
    assert torch.equal(learn.model[1].decoder.bias[real], source.model[1].decoder.bias[real])
    assert learn.model[1].decoder.weight is learn.model[0].encoder.weight  # still tied
    assert [sum(p.requires_grad for p in g.parameters()) > 0 for g in learn.layer_groups] == [False] * 3 + [True]
    with pytest.raises(DataError, match="expected one \\*.pth"):
        resolve_pretrained(tmp_path)


def test_decode_spec_undoes_the_markup():
    assert decode_spec(["xxbos", "xxmaj", "this", "is", "xxup", "great", "xxrep", "3", "!", "xxwrep", "2", "so"]) \
        == "This is GREAT !!! so so"
