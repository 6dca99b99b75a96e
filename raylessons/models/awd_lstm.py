"""fastai v1's AWD-LSTM: the language model, the text classifier, their layer groups and configs."""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .awd_lstm_load import convert_weights, encoder_state, load_encoder_state, load_lm_checkpoint, read_itos

__all__ = ["AWDLSTMConfig", "lm_config", "clas_config", "RNNDropout", "EmbeddingDropout", "WeightDropout",
           "AWD_LSTM", "LinearDecoder", "SequentialRNN", "AWDLanguageModel", "MultiBatchEncoder",
           "masked_concat_pool", "PoolingLinearClassifier", "AWDTextClassifier", "get_language_model",
           "get_text_classifier", "awd_lstm_lm_split", "awd_lstm_clas_split",
           "read_itos", "convert_weights", "load_lm_checkpoint", "encoder_state", "load_encoder_state"]

_DROPOUTS = ("hidden_p", "input_p", "embed_p", "weight_p", "output_p")


@dataclass(frozen=True)
class AWDLSTMConfig:
    """Sizes and dropouts of an AWD-LSTM; the defaults are fastai v1's AWD_LSTM class defaults."""

    emb_sz: int = 400
    n_hid: int = 1152  # 1150 before fastai 1.0.53 (the WT103_1 weights)
    n_layers: int = 3
    pad_token: int = 1
    hidden_p: float = 0.2
    input_p: float = 0.6
    embed_p: float = 0.1
    weight_p: float = 0.5
    output_p: float = 0.4
    tie_weights: bool = True
    out_bias: bool = True

    def scaled(self, drop_mult: float) -> "AWDLSTMConfig":
        """A copy with every *_p multiplied by drop_mult (fastai's `drop_mult`)."""
        cfg = dataclasses.replace(self, **{k: getattr(self, k) * drop_mult for k in _DROPOUTS})
        bad = [f"{k}={getattr(cfg, k):g}" for k in _DROPOUTS if not 0 <= getattr(cfg, k) < 1]
        if bad:
            raise ValueError(f"dropout probabilities must be in [0, 1) after drop_mult={drop_mult:g}: {bad}")
        return cfg

    @classmethod
    def lm_config(cls) -> "AWDLSTMConfig":
        """fastai v1's `awd_lstm_lm_config`."""
        return cls(output_p=0.1, hidden_p=0.15, input_p=0.25, embed_p=0.02, weight_p=0.2,
                   tie_weights=True, out_bias=True)

    @classmethod
    def clas_config(cls) -> "AWDLSTMConfig":
        """fastai v1's `awd_lstm_clas_config`."""
        return cls(output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)


lm_config, clas_config = AWDLSTMConfig.lm_config, AWDLSTMConfig.clas_config


def _check_p(p: float, name: str) -> float:
    if not 0 <= p < 1:
        raise ValueError(f"{name} must be in [0, 1), got {p}")
    return p


class RNNDropout(nn.Module):
    """Locked dropout: one mask per sequence, shared by every time step."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_p(p, "RNNDropout p")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F)
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - self.p).div_(1 - self.p)  # (B, 1, F)
        return x * mask


class EmbeddingDropout(nn.Module):
    """Drops whole rows (words) of the embedding matrix of `emb` while training."""

    def __init__(self, emb: nn.Embedding, embed_p: float):
        super().__init__()
        self.emb, self.embed_p = emb, _check_p(embed_p, "embed_p")

    def forward(self, words: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, E)
        weight = self.emb.weight  # (V, E)
        if self.training and self.embed_p != 0:
            mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - self.embed_p).div_(1 - self.embed_p)
            weight = weight * mask  # (V, 1) mask: a dropped word is zero wherever it occurs
        return F.embedding(words, weight, self.emb.padding_idx, self.emb.max_norm, self.emb.norm_type,
                           self.emb.scale_grad_by_freq, self.emb.sparse)


def _no_flatten() -> None:
    """Stands in for RNNBase.flatten_parameters: a dropped copy is no Parameter and must not be compacted."""


class WeightDropout(nn.Module):
    """DropConnect on `module`'s `layer_names` weights: the Parameter lives here as `<name>_raw`."""

    def __init__(self, module: nn.Module, weight_p: float, layer_names: Sequence[str] = ("weight_hh_l0",)):
        super().__init__()
        self.module, self.weight_p = module, _check_p(weight_p, "weight_p")
        self.layer_names = list(layer_names)
        for name in self.layer_names:
            w = getattr(module, name)
            del module._parameters[name]  # from now on a plain tensor attribute, re-installed every forward
            self.register_parameter(f"{name}_raw", nn.Parameter(w.detach().clone()))
        self._install_placeholders()
        if isinstance(module, nn.RNNBase):
            module.flatten_parameters = _no_flatten  # cuDNN then compacts per call, as in fastai
        self.register_load_state_dict_pre_hook(WeightDropout._drop_derived_keys)

    def _install_placeholders(self) -> None:
        # a detached alias between forwards keeps the module copyable and picklable
        for name in self.layer_names:
            setattr(self.module, name, getattr(self, f"{name}_raw").detach())

    def _install_weights(self) -> None:
        for name in self.layer_names:
            raw = getattr(self, f"{name}_raw")
            w = F.dropout(raw, self.weight_p) if self.training and self.weight_p > 0 else raw.view_as(raw)
            setattr(self.module, name, w)  # a plain tensor: RNNBase.__setattr__ updates _flat_weights

    def forward(self, *args):
        """Install freshly dropped weights (the raw ones in eval) and run the wrapped module."""
        self._install_weights()
        try:
            if not getattr(self, f"{self.layer_names[0]}_raw").is_cuda:
                return self.module(*args)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="RNN module weights are not part of single")
                return self.module(*args)
        finally:
            self._install_placeholders()

    @staticmethod
    def _drop_derived_keys(module, state_dict, prefix, *args) -> None:
        # fastai checkpoints may hold module.<name>: a derived copy of <name>_raw, which is the truth
        for name in module.layer_names:
            derived = state_dict.pop(f"{prefix}module.{name}", None)
            if derived is not None and f"{prefix}{name}_raw" not in state_dict:
                state_dict[f"{prefix}{name}_raw"] = derived


class AWD_LSTM(nn.Module):
    """Embedding + stacked single-layer LSTMs with AWD dropouts; stateful across calls (truncated BPTT)."""

    initrange = 0.1

    def __init__(self, vocab_sz: int, cfg: AWDLSTMConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or AWDLSTMConfig()
        self.encoder = nn.Embedding(vocab_sz, cfg.emb_sz, padding_idx=cfg.pad_token)
        with torch.no_grad():
            self.encoder.weight.uniform_(-self.initrange, self.initrange)
            self.encoder.weight[cfg.pad_token].zero_()
        self.encoder_dp = EmbeddingDropout(self.encoder, cfg.embed_p)
        # the last layer outputs emb_sz so that the decoder can be tied to the embedding
        sizes = [cfg.emb_sz] + [cfg.n_hid] * (cfg.n_layers - 1) + [cfg.emb_sz]
        self.rnns = nn.ModuleList(WeightDropout(nn.LSTM(n_in, n_out, 1, batch_first=True), cfg.weight_p)
                                  for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.input_dp = RNNDropout(cfg.input_p)
        self.hidden_dps = nn.ModuleList(RNNDropout(cfg.hidden_p) for _ in range(cfg.n_layers))
        self.hidden: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def reset(self) -> None:
        """Forget the hidden state (the next call starts from zeros)."""
        self.hidden = None

    def _hidden_for(self, bs: int, like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        h = self.hidden
        if h is None or h[0][0].size(1) != bs or h[0][0].device != like.device:
            w = self.encoder.weight
            h = [(w.new_zeros(1, bs, rnn.module.hidden_size), w.new_zeros(1, bs, rnn.module.hidden_size))
                 for rnn in self.rnns]  # (1, B, H) each
        # a state saved under autocast may be fp16; the LSTM wants its input's dtype
        return [(a.to(like.dtype), c.to(like.dtype)) for a, c in h]

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(B, T) token ids -> (raw outputs, outputs after hidden dropout), one (B, T, H_l) per layer."""
        out = self.input_dp(self.encoder_dp(x))  # (B, T, E)
        hidden = self._hidden_for(x.size(0), out)
        new_hidden, raw_outputs, outputs = [], [], []
        for l, (rnn, hid_dp) in enumerate(zip(self.rnns, self.hidden_dps)):
            raw, h = rnn(out, hidden[l])  # (B, T, H_l)
            new_hidden.append(h)
            raw_outputs.append(raw)
            out = hid_dp(raw) if l != len(self.rnns) - 1 else raw
            outputs.append(out)
        self.hidden = [(a.detach(), c.detach()) for a, c in new_hidden]
        return raw_outputs, outputs


class LinearDecoder(nn.Module):
    """Locked dropout then a Linear to the vocabulary, optionally tied to the embedding."""

    initrange = 0.1

    def __init__(self, n_out: int, n_hid: int, output_p: float, tie_encoder: nn.Embedding | None = None,
                 bias: bool = True):
        super().__init__()
        self.decoder = nn.Linear(n_hid, n_out, bias=bias)
        with torch.no_grad():
            self.decoder.weight.uniform_(-self.initrange, self.initrange)
            if bias:
                self.decoder.bias.zero_()
        self.output_dp = RNNDropout(output_p)
        if tie_encoder is not None:
            self.decoder.weight = tie_encoder.weight

    def forward(self, output: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, T, V)
        return self.decoder(self.output_dp(output))


class _Stash:
    """Last forward's final-layer outputs, for AR/TAR; copies and pickles as empty (they hold a graph)."""

    def __init__(self):
        self.raw: torch.Tensor | None = None
        self.dropped: torch.Tensor | None = None

    def __deepcopy__(self, memo) -> "_Stash":
        return _Stash()

    def __reduce__(self):
        return (_Stash, ())


class SequentialRNN(nn.Sequential):
    """nn.Sequential whose reset() resets every child that has one; stashes outputs for RNNTrainer."""

    def __init__(self, *args):
        super().__init__(*args)
        self._stash = _Stash()

    def reset(self) -> None:
        """Reset the hidden state of every child that has one."""
        for c in self.children():
            if hasattr(c, "reset"):
                c.reset()

    @property
    def last_raw(self) -> torch.Tensor | None:
        """Raw output of the last LSTM layer in the last forward, (B, T, E)."""
        return self._stash.raw

    @property
    def last_dropped(self) -> torch.Tensor | None:
        """fastai v1's `outputs[-1]`: the last layer has no hidden dropout, so this is `last_raw` itself."""
        return self._stash.dropped


class AWDLanguageModel(SequentialRNN):
    """[AWD_LSTM, LinearDecoder]: (B, T) token ids -> (B, T, vocab) logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw_outputs, outputs = self[0](x)
        self._stash.raw, self._stash.dropped = raw_outputs[-1], outputs[-1]
        return self[1](outputs[-1])  # (B, T, V)


class MultiBatchEncoder(nn.Module):
    """Runs `module` over a whole padded batch in bptt chunks, keeping about the last `max_len` steps."""

    def __init__(self, bptt: int, max_len: int, module: AWD_LSTM, pad_idx: int | None = None):
        super().__init__()
        self.bptt, self.max_len, self.module = bptt, max_len, module
        self.pad_idx = module.cfg.pad_token if pad_idx is None else pad_idx

    def reset(self) -> None:
        """Reset the wrapped AWD_LSTM."""
        self.module.reset()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids -> (last layer output (B, T', E), pad mask (B, T')) over the kept chunks."""
        sl = x.size(1)
        self.reset()
        outs, masks = [], []
        for i in range(0, sl, self.bptt):
            chunk = x[:, i:i + self.bptt]  # (B, bptt)
            keep = i > sl - self.max_len or i + self.bptt >= sl  # fastai's rule; the last chunk always
            with torch.set_grad_enabled(keep and torch.is_grad_enabled()):  # dropped chunks need no graph
                _, outputs = self.module(chunk)
            if keep:
                outs.append(outputs[-1])
                masks.append(chunk == self.pad_idx)
        return torch.cat(outs, dim=1), torch.cat(masks, dim=1)


def masked_concat_pool(output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, E), pad mask (B, T) -> (B, 3E): [last step, max over real steps, mean over real steps]."""
    pads = mask.unsqueeze(-1)  # (B, T, 1)
    n_real = (~mask).sum(dim=1, keepdim=True).clamp(min=1).to(output.dtype)  # (B, 1)
    avg_pool = output.masked_fill(pads, 0).sum(dim=1) / n_real  # (B, E)
    max_pool = output.masked_fill(pads, -float("inf")).max(dim=1).values  # (B, E)
    return torch.cat([output[:, -1], max_pool, avg_pool], dim=1)  # padding is first: the last step is real


class PoolingLinearClassifier(nn.Module):
    """masked_concat_pool then blocks of BatchNorm1d -> Dropout -> Linear (ReLU between blocks)."""

    def __init__(self, layers: Sequence[int], drops: Sequence[float]):
        super().__init__()
        if len(drops) != len(layers) - 1:
            raise ValueError(f"{len(layers)} layer sizes need {len(layers) - 1} dropouts, got {len(drops)}")
        mods: list[nn.Module] = []
        for i, (n_in, n_out, p) in enumerate(zip(layers[:-1], layers[1:], drops)):
            mods.append(nn.BatchNorm1d(n_in))
            if p != 0:  # fastai's bn_drop_lin skips p=0, which shifts the `layers.N` key numbers
                mods.append(nn.Dropout(p))
            mods.append(nn.Linear(n_in, n_out))
            if i < len(drops) - 1:
                mods.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*mods)

    def forward(self, output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # -> (B, n_class)
        return self.layers(masked_concat_pool(output, mask))


class AWDTextClassifier(SequentialRNN):
    """[MultiBatchEncoder, PoolingLinearClassifier]: (B, T) padded ids -> (B, n_class) logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, mask = self[0](x)  # (B, T', E), (B, T')
        self._stash.raw = self._stash.dropped = output
        return self[1](output, mask)


def get_language_model(vocab_sz: int, cfg: AWDLSTMConfig | None = None, drop_mult: float = 1.0) -> AWDLanguageModel:
    """fastai v1's AWD-LSTM language model (lm_config unless `cfg`), dropouts times drop_mult."""
    cfg = (cfg or lm_config()).scaled(drop_mult)
    encoder = AWD_LSTM(vocab_sz, cfg)
    tie = encoder.encoder if cfg.tie_weights else None
    return AWDLanguageModel(encoder, LinearDecoder(vocab_sz, cfg.emb_sz, cfg.output_p, tie, cfg.out_bias))


def get_text_classifier(vocab_sz: int, n_class: int, cfg: AWDLSTMConfig | None = None, drop_mult: float = 1.0,
                        bptt: int = 70, max_len: int = 1400, lin_ftrs: Sequence[int] | None = None,
                        ps: Sequence[float] | None = None) -> AWDTextClassifier:
    """fastai v1's AWD-LSTM classifier (clas_config unless `cfg`); `ps` is not scaled by drop_mult."""
    cfg = (cfg or clas_config()).scaled(drop_mult)
    lin_ftrs = [50] if lin_ftrs is None else list(lin_ftrs)
    ps = [0.1] * len(lin_ftrs) if ps is None else list(ps)
    if len(ps) != len(lin_ftrs):
        raise ValueError(f"ps has {len(ps)} values but lin_ftrs has {len(lin_ftrs)} layers")
    layers, drops = [cfg.emb_sz * 3, *lin_ftrs, n_class], [cfg.output_p, *ps]
    encoder = MultiBatchEncoder(bptt, max_len, AWD_LSTM(vocab_sz, cfg), pad_idx=cfg.pad_token)
    return AWDTextClassifier(encoder, PoolingLinearClassifier(layers, drops))


def awd_lstm_lm_split(model: AWDLanguageModel) -> list[nn.Module]:
    """4 layer groups: [rnn_i, hidden_dp_i] per layer, then [embedding, embedding dropout, decoder]."""
    enc = model[0]
    groups = [nn.ModuleList([rnn, dp]) for rnn, dp in zip(enc.rnns, enc.hidden_dps)]
    return groups + [nn.ModuleList([enc.encoder, enc.encoder_dp, model[1]])]


def awd_lstm_clas_split(model: AWDTextClassifier) -> list[nn.Module]:
    """5 layer groups: [embedding, embedding dropout], [rnn_i, hidden_dp_i] per layer, [head]."""
    enc = model[0].module
    groups = [nn.ModuleList([enc.encoder, enc.encoder_dp])]
    groups += [nn.ModuleList([rnn, dp]) for rnn, dp in zip(enc.rnns, enc.hidden_dps)]
    return groups + [nn.ModuleList([model[1]])]
