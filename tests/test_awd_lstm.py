"""fastai v1's AWD-LSTM: sizes and key names, dropouts, state, classifier pooling, layer groups, loading, AR/TAR."""
from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raylessons.callbacks.rnn import RNNTrainer
from raylessons.errors import DataError
from raylessons.models.awd_lstm import (AWD_LSTM, AWDLSTMConfig, EmbeddingDropout, MultiBatchEncoder,
                                        RNNDropout, WeightDropout, awd_lstm_clas_split, awd_lstm_lm_split,
                                        clas_config, convert_weights, encoder_state, get_language_model,
                                        get_text_classifier, lm_config, load_encoder_state, load_lm_checkpoint,
                                        masked_concat_pool, read_itos)

TINY = AWDLSTMConfig(emb_sz=8, n_hid=12, n_layers=3)
V = 20


def fastai_lm_keys(prefix: str = "0.", with_derived: bool = True) -> set[str]:
    """fastai v1's LM state-dict keys (reference C9)."""
    keys = {f"{prefix}encoder.weight", f"{prefix}encoder_dp.emb.weight", "1.decoder.weight", "1.decoder.bias"}
    for i in range(3):
        keys |= {f"{prefix}rnns.{i}.weight_hh_l0_raw", f"{prefix}rnns.{i}.module.weight_ih_l0",
                 f"{prefix}rnns.{i}.module.bias_ih_l0", f"{prefix}rnns.{i}.module.bias_hh_l0"}
        if with_derived:
            keys.add(f"{prefix}rnns.{i}.module.weight_hh_l0")
    return keys


def tokens(bs: int, sl: int, vocab: int = V, seed: int = 0) -> torch.Tensor:
    """Random ids that are never the pad token (1)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, vocab, (bs, sl), generator=g)


# ----- 1. sizes and key names
def test_parameter_counts_and_keys_at_reference_sizes():
    vocab, emb, hid = 100, 400, 1152

    def lstm(n_in, h):
        return 4 * h * (n_in + h) + 8 * h

    body = vocab * emb + lstm(emb, hid) + lstm(hid, hid) + lstm(hid, emb)
    lm = get_language_model(vocab)
    assert sum(p.numel() for p in lm.parameters()) == body + vocab == 20_313_380  # tied weight counted once
    head = 2 * 1200 + (1200 * 50 + 50) + 2 * 50 + (50 * 2 + 2)
    clas = get_text_classifier(vocab, 2)
    assert sum(p.numel() for p in clas.parameters()) == body + head == 20_375_932

    keys = set(lm.state_dict())
    assert fastai_lm_keys(with_derived=False) <= keys <= fastai_lm_keys(with_derived=True)
    sd = lm.state_dict()
    assert sd["0.rnns.0.module.weight_ih_l0"].shape == (4608, 400)
    assert sd["0.rnns.2.weight_hh_l0_raw"].shape == (1600, 400)
    ckeys = set(clas.state_dict())
    assert {"0.module.encoder.weight", "0.module.rnns.0.weight_hh_l0_raw", "1.layers.0.weight",
            "1.layers.2.weight", "1.layers.6.weight"} <= ckeys
    assert not any(k.startswith("1.decoder") for k in ckeys)


def test_configs_and_drop_mult():
    lm, clas = lm_config(), clas_config()
    assert (lm.output_p, lm.hidden_p, lm.input_p, lm.embed_p, lm.weight_p) == (0.1, 0.15, 0.25, 0.02, 0.2)
    assert (clas.output_p, clas.hidden_p, clas.input_p, clas.embed_p, clas.weight_p) == (0.4, 0.3, 0.4, 0.05, 0.5)
    s = lm.scaled(0.3)  # the lesson's LM values
    assert [round(v, 6) for v in (s.output_p, s.hidden_p, s.input_p, s.embed_p, s.weight_p)] == \
        [0.03, 0.045, 0.075, 0.006, 0.06]
    s = clas.scaled(0.5)
    assert [round(v, 6) for v in (s.output_p, s.hidden_p, s.input_p, s.embed_p, s.weight_p)] == \
        [0.2, 0.15, 0.2, 0.025, 0.25]
    assert (s.emb_sz, s.n_hid, s.n_layers, s.pad_token) == (400, 1152, 3, 1)
    with pytest.raises(ValueError, match="weight_p"):
        clas.scaled(2.0)
    m = get_text_classifier(V, 3, TINY, drop_mult=0.5)
    drops = [mod.p for mod in m[1].layers if isinstance(mod, nn.Dropout)]
    assert drops == pytest.approx([0.2, 0.1])  # output_p scaled, the head's 0.1 not


# ----- 2. tied weights
def test_decoder_weight_is_the_embedding_parameter():
    m = get_language_model(V, TINY)
    assert m[1].decoder.weight is m[0].encoder.weight is m[0].encoder_dp.emb.weight
    untied = get_language_model(V, dataclasses.replace(TINY, tie_weights=False, out_bias=False))
    assert untied[1].decoder.weight is not untied[0].encoder.weight and untied[1].decoder.bias is None
    assert torch.all(m[0].encoder.weight[TINY.pad_token] == 0)


# ----- 3. dropouts
def test_rnn_dropout_is_locked_over_time():
    torch.manual_seed(0)
    dp = RNNDropout(0.5).train()
    out = dp(torch.ones(4, 9, 16))
    assert torch.equal(out, out[:, :1].expand_as(out))  # one mask per sequence
    assert set(out.unique().tolist()) == {0.0, 2.0}
    x = torch.randn(2, 3, 4)
    assert dp.eval()(x) is x


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(0)
    emb = nn.Embedding(50, 6, padding_idx=1)
    dp = EmbeddingDropout(emb, 0.5).train()
    words = torch.arange(50).repeat(3, 1)  # every word three times
    out = dp(words)  # (3, 50, 6)
    dropped = (out == 0).all(-1)  # (3, 50)
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))  # a word is dropped everywhere or nowhere
    kept = ~dropped[0]
    assert 5 < kept.sum() < 45
    assert torch.allclose(out[0, kept], emb.weight[kept] * 2)
    assert torch.equal(dp.eval()(words), emb(words))


def test_weight_dropout_drops_hidden_to_hidden_weights():
    torch.manual_seed(0)
    wd = WeightDropout(nn.LSTM(5, 7, 1, batch_first=True), 0.5)
    assert set(wd.state_dict()) == {"weight_hh_l0_raw", "module.weight_ih_l0", "module.bias_ih_l0",
                                    "module.bias_hh_l0"}
    raw_before = wd.weight_hh_l0_raw.detach().clone()
    seen = []
    hook = wd.module.register_forward_pre_hook(lambda mod, args: seen.append(mod.weight_hh_l0.detach().clone()))
    x = torch.randn(2, 4, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning spam
        wd.train()(x)
        wd.eval()(x)
    hook.remove()
    used_train, used_eval = seen
    assert torch.equal(wd.weight_hh_l0_raw, raw_before)
    zeroed = used_train == 0
    assert 0.3 < zeroed.float().mean() < 0.7
    assert torch.allclose(used_train[~zeroed], raw_before[~zeroed] * 2)
    assert torch.equal(used_eval, raw_before)
    # a fastai checkpoint's derived module.weight_hh_l0 is accepted; _raw is the truth
    sd = {k: v.clone() for k, v in wd.state_dict().items()}
    sd["weight_hh_l0_raw"] += 1
    sd["module.weight_hh_l0"] = torch.zeros(28, 7)
    wd.load_state_dict(sd)
    assert torch.equal(wd.weight_hh_l0_raw, raw_before + 1)
    wd.train()(x)
    copy.deepcopy(wd), pickle.dumps(wd)  # possible right after a training forward


# ----- 4. state
def test_hidden_state_carries_over_calls_and_resets():
    torch.manual_seed(0)
    m = AWD_LSTM(V, TINY).eval()
    x = tokens(2, 10)
    with torch.no_grad():
        m.reset()
        whole = m(x)[1][-1]
        m.reset()
        halves = torch.cat([m(x[:, :5])[1][-1], m(x[:, 5:])[1][-1]], dim=1)
        assert torch.allclose(halves, whole, atol=1e-6)
        m.reset()
        m(x[:, :5])
        m.reset()
        assert not torch.allclose(m(x[:, 5:])[1][-1], whole[:, 5:], atol=1e-4)
        assert len(m.hidden) == 3 and m.hidden[0][0].shape == (1, 2, 12) and m.hidden[2][0].shape == (1, 2, 8)
        m(x[:1, :3])  # batch size changed: a fresh state
        assert m.hidden[0][0].shape == (1, 1, 12)
    raw, out = m.train()(x)
    assert not m.hidden[0][0].requires_grad  # truncated BPTT
    assert raw[-1] is out[-1] and not torch.equal(raw[0], out[0])  # no hidden dropout after the last layer


# ----- 5. classifier encoder and pooling
def test_masked_concat_pool_by_hand():
    out = torch.randn(2, 5, 3) - 1  # mostly negative: an unmasked pad (0) would win the max
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    got = masked_concat_pool(out, mask)
    row0 = out[0, 2:]
    assert torch.allclose(got[0], torch.cat([out[0, -1], row0.max(0).values, row0.mean(0)]))
    assert torch.allclose(got[1], torch.cat([out[1, -1], out[1].max(0).values, out[1].mean(0)]))


def test_padding_first_gives_the_unpadded_output():
    torch.manual_seed(0)
    m = get_text_classifier(V, 3, TINY, bptt=4, max_len=100).eval()
    # fastai runs pads through the LSTM; with zero LSTM biases a zero (pad) input keeps the zero state,
    # which isolates what this checks: pad masks, chunking and pooling
    with torch.no_grad():
        for rnn in m[0].module.rnns:
            rnn.module.bias_ih_l0.zero_(), rnn.module.bias_hh_l0.zero_()
            rnn.module.weight_ih_l0.mul_(5)  # larger weights: activations of order 0.1, not 0.001
        m[0].module.encoder.weight.mul_(20)  # the pad row stays zero
        a, b = tokens(1, 7, seed=1), tokens(1, 11, seed=2)
        batch = torch.cat([torch.cat([torch.ones(1, 4, dtype=torch.long), a], 1), b])  # pad (1) first
        pooled = masked_concat_pool(*m[0](batch))
        pooled_alone = torch.cat([masked_concat_pool(*m[0](a)), masked_concat_pool(*m[0](b))])
        together, alone = m(batch), torch.cat([m(a), m(b)])
    assert pooled.shape == (2, 24) and pooled.abs().mean() > 0.05
    assert torch.allclose(pooled, pooled_alone, atol=1e-6)
    assert together.shape == (2, 3)
    assert torch.allclose(together, alone, atol=1e-6)


def test_max_len_keeps_only_the_last_chunks():
    torch.manual_seed(0)
    awd = AWD_LSTM(V, TINY).eval()
    enc = MultiBatchEncoder(bptt=3, max_len=5, module=awd)
    x = tokens(2, 10)
    with torch.no_grad():
        out, mask = enc(x)  # chunks start at 0, 3, 6, 9; fastai keeps those after 10 - 5: 6 and 9
        assert out.shape == (2, 4, 8) and mask.shape == (2, 4) and not mask.any()
        awd.reset()
        full = awd(x)[1][-1]
    assert torch.allclose(out, full[:, -4:], atol=1e-6)


# ----- 6. layer groups
def _check_groups(model, groups):
    ids = [id(p) for g in groups for p in g.parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_splitters_cover_every_parameter_once():
    lm = get_language_model(V, TINY)
    groups = awd_lstm_lm_split(lm)
    assert len(groups) == 4
    _check_groups(lm, groups)
    assert any(p is lm[1].decoder.weight for p in groups[3].parameters())
    assert any(p is lm[1].decoder.bias for p in groups[3].parameters())
    clas = get_text_classifier(V, 2, TINY)
    groups = awd_lstm_clas_split(clas)
    assert len(groups) == 5
    _check_groups(clas, groups)


def test_classifier_freeze_to_minus_2_trains_last_rnn_and_head(tmp_path):
    from raylessons.learner import Learner

    clas = get_text_classifier(V, 2, TINY)
    data = SimpleNamespace(loss_func=F.cross_entropy, path=tmp_path, c=2)
    learn = Learner(data, clas, splitter=awd_lstm_clas_split, device="cpu")
    learn.freeze_to(-2)
    trainable = {n for n, p in clas.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("0.module.rnns.2.", "1.")) for n in trainable)
    assert learn.trainable_counts() == [0, 0, 0, 4, 8]
    learn.freeze()
    assert learn.trainable_counts() == [0, 0, 0, 0, 8]


# ----- 7. vocabularies and checkpoints
def test_convert_weights_remaps_rows_by_token():
    old = ["xxunk", "xxpad", "the", "cat", "sat"]
    new = ["xxunk", "xxpad", "sat", "dog", "the"]
    enc, bias = torch.randn(5, 4), torch.randn(5)
    sd = {"0.encoder.weight": enc, "0.encoder_dp.emb.weight": enc.clone(), "1.decoder.weight": enc.clone(),
          "1.decoder.bias": bias, "0.rnns.0.weight_hh_l0_raw": torch.zeros(1)}
    out = convert_weights(sd, old, new)
    w = out["0.encoder.weight"]
    assert torch.equal(w[[0, 1, 2, 4]], enc[[0, 1, 4, 2]])
    assert torch.allclose(w[3], enc.mean(0)) and torch.isclose(out["1.decoder.bias"][3], bias.mean())
    assert torch.equal(out["1.decoder.bias"][[2, 4]], bias[[4, 2]])
    assert torch.equal(out["1.decoder.weight"], w) and torch.equal(out["0.encoder_dp.emb.weight"], w)
    assert sd["0.encoder.weight"] is enc  # the input is not modified


@pytest.mark.parametrize("with_derived", [True, False])
def test_load_lm_checkpoint_with_fastai_keys(tmp_path, with_derived):
    torch.manual_seed(0)
    src = get_language_model(V, TINY)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    assert set(sd) == fastai_lm_keys(with_derived=False)
    if with_derived:  # as fastai v1 saves it
        for i in range(3):
            sd[f"0.rnns.{i}.module.weight_hh_l0"] = sd[f"0.rnns.{i}.weight_hh_l0_raw"].clone()
    torch.save({"model": sd, "opt": {}}, tmp_path / "lstm_fwd.pth")
    dst = load_lm_checkpoint(get_language_model(V, TINY), tmp_path / "lstm_fwd.pth")
    x = tokens(2, 6)
    src.eval().reset(), dst.eval()
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    assert dst[1].decoder.weight is dst[0].encoder.weight


def test_load_lm_checkpoint_remaps_vocab_and_rejects_mismatches():
    torch.manual_seed(0)
    old, new = [f"w{i}" for i in range(V)], [f"w{i}" for i in range(V - 5)] + ["new"] * 7
    src = get_language_model(V, TINY)
    dst = load_lm_checkpoint(get_language_model(len(new), TINY), src.state_dict(), old, new)
    assert torch.equal(dst[0].encoder.weight[:V - 5], src[0].encoder.weight[:V - 5])
    assert torch.allclose(dst[0].encoder.weight[-1], src[0].encoder.weight.mean(0))
    with pytest.raises(ValueError, match="old_itos and new_itos"):
        load_lm_checkpoint(get_language_model(len(new), TINY), src.state_dict())
    bigger = get_language_model(V, dataclasses.replace(TINY, n_hid=14))
    with pytest.raises(ValueError, match=r"0\.rnns\.0\.weight_hh_l0_raw: checkpoint \(48, 12\) vs model \(56, 14\)"):
        load_lm_checkpoint(bigger, {"model": src.state_dict()})
    sd = dict(src.state_dict())
    del sd["1.decoder.bias"]
    sd["0.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys: \['1.decoder.bias'\][\s\S]*unexpected keys: \['0.extra'\]"):
        load_lm_checkpoint(get_language_model(V, TINY), sd)


def test_encoder_state_moves_from_lm_to_classifier():
    torch.manual_seed(0)
    lm = get_language_model(V, TINY)
    enc = encoder_state(lm)
    assert set(enc) == {k[2:] for k in fastai_lm_keys(with_derived=False) if k.startswith("0.")}
    clas = load_encoder_state(get_text_classifier(V, 2, TINY), enc)
    assert torch.equal(clas[0].module.rnns[1].weight_hh_l0_raw, lm[0].rnns[1].weight_hh_l0_raw)
    assert torch.equal(clas[0].module.encoder.weight, lm[0].encoder.weight)
    clas2 = load_lm_checkpoint(get_text_classifier(V, 2, TINY), {"model": lm.state_dict()})  # pretrained=True
    assert torch.equal(clas2[0].module.rnns[2].module.weight_ih_l0, lm[0].rnns[2].module.weight_ih_l0)


def test_read_itos_json_and_restricted_pickle(tmp_path: Path):
    itos = ["xxunk", "xxpad", "the", "é"]
    (tmp_path / "itos.json").write_text(json.dumps(itos))
    (tmp_path / "itos.pkl").write_bytes(pickle.dumps(itos))
    assert read_itos(tmp_path / "itos.json") == itos == read_itos(tmp_path / "itos.pkl")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([Path("x")]))  # needs a global: refused
    with pytest.raises(DataError, match="refusing to load pathlib"):
        read_itos(tmp_path / "evil.pkl")
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match="list of strings"):
        read_itos(tmp_path / "dict.pkl")


# ----- 8. AR / TAR
def test_rnn_trainer_adds_ar_and_tar():
    torch.manual_seed(0)
    m = get_language_model(V, TINY).train()
    x = tokens(3, 6)
    m(x)
    raw = m.last_raw
    assert raw.shape == (3, 6, 8) and m.last_dropped is raw  # fastai v1: outputs[-1] of the last layer
    ar = raw.pow(2).mean()
    tar = ((raw[:, 1:] - raw[:, :-1]) ** 2).mean()
    learn = SimpleNamespace(model=nn.DataParallel(m), training=True, loss=torch.tensor(1.5))
    RNNTrainer(alpha=2.0, beta=1.0).after_loss(learn)
    assert torch.isclose(learn.loss, 1.5 + 2 * ar + 1 * tar)
    assert learn.loss.requires_grad
    learn = SimpleNamespace(model=m, training=False, loss=torch.tensor(1.5))
    RNNTrainer().after_loss(learn)
    assert learn.loss.item() == 1.5
    assert m[0].hidden is not None
    RNNTrainer().before_epoch(learn)
    assert m[0].hidden is None


# ----- 9. gradients
def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    lm = get_language_model(V, TINY, drop_mult=0.5).train()
    x = tokens(4, 9)
    F.cross_entropy(lm(x).flatten(0, 1), x.flatten()).backward()
    clas = get_text_classifier(V, 2, TINY, bptt=4).train()
    F.cross_entropy(clas(x), torch.tensor([0, 1, 0, 1])).backward()
    for model in (lm, clas):
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fit_with_rnn_trainer_in_the_learner_loop():
    from raylessons.learner import Learner

    torch.manual_seed(0)
    x = tokens(4, 9)
    batches = [(x[:, i:i + 4], x[:, i + 1:i + 5]) for i in (0, 4)]
    data = SimpleNamespace(train_dl=batches, valid_dl=batches, path=".", c=V,
                           loss_func=lambda pred, y: F.cross_entropy(pred.flatten(0, 1), y.flatten()),
                           to_device=lambda xb, yb, device, channels_last: (xb.to(device), yb.to(device)))
    lm = get_language_model(V, TINY)
    learn = Learner(data, lm, splitter=awd_lstm_lm_split, device="cpu", callbacks=[RNNTrainer()])
    learn.freeze()  # only the embedding (tied decoder) and the decoder bias train
    rnn_before = lm[0].rnns[0].weight_hh_l0_raw.detach().clone()
    emb_before = lm[0].encoder.weight.detach().clone()
    learn.fit(1, 1e-2)
    loss = learn.recorder.epoch_rows[-1]["train_loss"]
    assert loss == loss and loss > 0
    assert torch.equal(lm[0].rnns[0].weight_hh_l0_raw, rnn_before)
    assert not torch.equal(lm[0].encoder.weight, emb_before)
