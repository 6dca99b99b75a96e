"""ULMFiT learners: `language_model_learner` and `text_classifier_learner` on the AWD-LSTM.

    data_lm = TextList.from_folder(path).filter_by_folder(include=['train', 'test', 'unsup'])
                      .split_by_rand_pct(0.1).label_for_lm().databunch(bs=48)
    learn = language_model_learner(data_lm, AWD_LSTM, drop_mult=0.3, pretrained=...)
    learn.fit_one_cycle(1, 1e-2, moms=(0.8, 0.7)); learn.unfreeze(); learn.fit_one_cycle(10, 1e-3, moms=(0.8, 0.7))
    learn.predict("I liked this movie because", n_words=10); learn.save_encoder('fine_tuned_enc')
    learn = text_classifier_learner(data_clas, AWD_LSTM, drop_mult=0.5); learn.load_encoder('fine_tuned_enc')
    learn.freeze_to(-2); learn.fit_one_cycle(1, slice(1e-2 / 2.6**4, 1e-2), moms=(0.8, 0.7)) ...

`pretrained` is False (random weights), True (fastai's WT103 download), a directory holding fastai's
`*.pth` + `itos*.pkl` (or `itos.json`), or an export of `raylessons pretrain-lm` (model.pt + meta.json).
Either way the checkpoint's rows are mapped onto this data's vocab by token (new words get the mean row).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from .callbacks.rnn import RNNTrainer
from .data.download import download
from .data.labels import LMLabel
from .data.tokenize import Tokenizer
from .data.vocab import Vocab
from .errors import ConfigError, DataError
from .learner import Learner
from .metrics import accuracy
from .models.awd_lstm import (
    AWDLSTMConfig,
    awd_lstm_clas_split,
    awd_lstm_lm_split,
    encoder_state,
    get_language_model,
    get_text_classifier,
    load_encoder_state,
    load_lm_checkpoint,
    read_itos,
)

__all__ = ["AWD_LSTM", "RNNLearner", "LanguageLearner", "language_model_learner", "text_classifier_learner",
           "resolve_pretrained", "decode_spec", "SPECIAL_MARKUP", "is_lm_export"]

AWD_LSTM = "awd_lstm"  # the lesson passes the architecture; AWD-LSTM is the one there is
SPECIAL_MARKUP = ("xxbos", "xxeos", "xxfld", "xxpad")


def _arch(arch) -> None:
    name = arch if isinstance(arch, str) else getattr(arch, "__name__", str(arch))
    if name.lower().replace("-", "_") not in ("awd_lstm",):
        raise ConfigError(f"unknown text architecture {name!r}; the lesson's is AWD_LSTM")


def _config(config: AWDLSTMConfig | dict | None, default: AWDLSTMConfig) -> AWDLSTMConfig:
    if config is None:
        return default
    if isinstance(config, dict):
        return dataclasses.replace(default, **config)
    return config


class RNNLearner(Learner):
    """A Learner with AR/TAR regularisation and hidden-state resets, plus encoder files."""

    def __init__(self, data, model, alpha: float = 2.0, beta: float = 1.0, **kwargs):
        super().__init__(data, model, callbacks=[RNNTrainer(alpha, beta), *kwargs.pop("callbacks", ())],
                         **kwargs)

    def _encoder_file(self, name: str | Path) -> Path:
        name = Path(name)
        name = name if name.suffix == ".pth" else name.with_name(name.name + ".pth")
        return name if name.is_absolute() else self.path / self.model_dir / name

    def save_encoder(self, name: str | Path) -> Path:
        """Write the AWD-LSTM encoder (keys without the '0.' prefix) and the vocab it was trained with."""
        file = self._encoder_file(name)
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(encoder_state(self.model), file)
        file.with_suffix(".vocab.json").write_text(json.dumps(self.data.vocab.itos))
        return file

    def load_encoder(self, name: str | Path) -> "RNNLearner":
        """Load an encoder saved by `save_encoder` (its vocab must be this data's) and freeze."""
        file = self._encoder_file(name)
        if not file.is_file():
            raise DataError("no saved encoder here", file)
        vocab_file = file.with_suffix(".vocab.json")
        if vocab_file.is_file():
            _same_vocab(json.loads(vocab_file.read_text()), self.data.vocab.itos, file)
        load_encoder_state(self.model, file)
        self.freeze()
        return self


def _same_vocab(saved: list[str], ours: list[str], where) -> None:
    if saved == ours:
        return
    first = next((i for i, (a, b) in enumerate(zip(saved, ours)) if a != b), min(len(saved), len(ours)))
    got = (saved[first] if first < len(saved) else "<end>", ours[first] if first < len(ours) else "<end>")
    raise ConfigError(f"{where}: the encoder was trained with another vocab ({len(saved)} tokens) than this "
                      f"data's ({len(ours)} tokens); they first differ at id {first}: {got[0]!r} vs {got[1]!r}. "
                      "Build the classifier data with vocab=data_lm.vocab")


class LanguageLearner(RNNLearner):
    """An RNNLearner that generates text."""

    def predict(self, text: str, n_words: int = 1, no_unk: bool = True, temperature: float = 1.0,
                min_p: float | None = None, seed: int | None = None) -> str:
        """`text` followed by `n_words` sampled tokens, markup (xxmaj, xxup, ...) undone."""
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        vocab: Vocab = self.data.vocab
        tokens = Tokenizer().process_text(text)
        ids = torch.tensor([vocab.numericalize(tokens)], device=self.device)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        model = self.model.eval()
        model.reset()
        new = []
        with torch.inference_mode():
            logits = model(ids)[0, -1]
            for _ in range(n_words):
                probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
                if no_unk:
                    probs[vocab.stoi["xxunk"]] = 0
                if min_p is not None:
                    probs[probs < min_p] = 0
                idx = int(torch.multinomial(probs, 1, generator=gen))
                new.append(idx)
                logits = model(torch.tensor([[idx]], device=self.device))[0, -1]
        model.reset()
        return text + " " + decode_spec([vocab.itos[i] for i in new]) if new else text


def decode_spec(tokens: list[str]) -> str:
    """Undo the tokenizer's markup: xxmaj word -> Word, xxup word -> WORD, xxrep n c -> c*n, xxwrep n w -> w*n."""
    out, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok == "xxmaj" and nxt:
            out.append(nxt[:1].upper() + nxt[1:])
            i += 2
        elif tok == "xxup" and nxt:
            out.append(nxt.upper())
            i += 2
        elif tok in ("xxrep", "xxwrep") and nxt.isdigit() and i + 2 < len(tokens):
            n, what = int(nxt), tokens[i + 2]
            out.append(what * n if tok == "xxrep" else " ".join([what] * n))
            i += 3
        elif tok in SPECIAL_MARKUP:
            i += 1
        else:
            out.append(tok)
            i += 1
    return " ".join(out)


# ----- pretrained weights

def is_lm_export(meta: dict) -> bool:
    """Whether an export's meta.json is a language model's (language-model labels and the vocab's itos)."""
    return meta.get("label_kind") == LMLabel.kind and "itos" in meta


def resolve_pretrained(pretrained) -> tuple[Path, list[str]] | None:
    """(weights file, its itos) for a `pretrained` argument, or None for random weights."""
    if pretrained is False or pretrained is None:
        return None
    if pretrained is True:
        try:
            folder = download("wt103")
        except Exception as e:  # offline: say what to do instead
            raise DataError(f"cannot fetch fastai's WT103 weights ({e}); download wt103-fwd.tgz elsewhere and pass "
                            "pretrained='/path/to/wt103-fwd', or pretrain here with `raylessons pretrain-lm`, "
                            "or use pretrained=False") from None
        pretrained = folder
    path = Path(pretrained).expanduser()
    if (path / "meta.json").is_file() and (path / "model.pt").is_file():  # a raylessons export
        meta = json.loads((path / "meta.json").read_text())
        if not is_lm_export(meta):
            raise DataError("this export is not a language model (label_kind 'lm' with an itos)", path)
        return path / "model.pt", list(meta["itos"])
    if path.is_dir():
        weights = sorted(path.glob("*.pth"))
        itos = sorted(path.glob("itos*.pkl")) + sorted(path.glob("itos*.json"))
        if len(weights) != 1 or not itos:
            raise DataError(f"expected one *.pth and an itos*.pkl/itos*.json, found {[p.name for p in weights]} "
                            f"and {[p.name for p in itos]}", path)
        return weights[0], read_itos(itos[0])
    raise DataError("pretrained weights not found (give a wt103-fwd folder or a pretrain-lm export)", path)


def _load_pretrained(learn: RNNLearner, pretrained) -> RNNLearner:
    """Load `pretrained` weights (rows mapped onto the data's vocab by token) and freeze; False does nothing."""
    found = resolve_pretrained(pretrained)
    if found is not None:
        weights, itos = found
        load_lm_checkpoint(learn.model, weights, old_itos=itos, new_itos=learn.data.vocab.itos)
        learn.freeze()
    return learn


def language_model_learner(data, arch=AWD_LSTM, config: AWDLSTMConfig | dict | None = None, drop_mult: float = 1.0,
                           pretrained=False, metrics=(accuracy,), **learner_kwargs) -> LanguageLearner:
    """An AWD-LSTM language model on `data`; with pretrained weights it is frozen to the embeddings/decoder."""
    _arch(arch)
    cfg = _config(config, AWDLSTMConfig.lm_config())
    vocab = data.vocab
    model = get_language_model(len(vocab.itos), cfg, drop_mult)
    spec = {"kind": "awd_lstm_lm", "vocab_size": len(vocab.itos), "config": dataclasses.asdict(cfg),
            "drop_mult": drop_mult}
    learn = LanguageLearner(data, model, metrics=list(metrics), splitter=awd_lstm_lm_split, model_meta=spec,
                            **learner_kwargs)
    return _load_pretrained(learn, pretrained)


def text_classifier_learner(data, arch=AWD_LSTM, bptt: int = 70, max_len: int = 70 * 20,
                            config: AWDLSTMConfig | dict | None = None, drop_mult: float = 1.0,
                            lin_ftrs: list[int] | None = None, ps: list[float] | None = None, pretrained=False,
                            metrics=(accuracy,), **learner_kwargs) -> RNNLearner:
    """An AWD-LSTM classifier (concat pooling head) on `data`; `load_encoder` then brings the fine-tuned LM."""
    _arch(arch)
    cfg = _config(config, AWDLSTMConfig.clas_config())
    vocab = data.vocab
    model = get_text_classifier(len(vocab.itos), data.c, cfg, drop_mult, bptt, max_len, lin_ftrs, ps)
    spec = {"kind": "awd_lstm_clas", "vocab_size": len(vocab.itos), "n_class": data.c,
            "config": dataclasses.asdict(cfg), "drop_mult": drop_mult, "bptt": bptt, "max_len": max_len,
            "lin_ftrs": lin_ftrs, "ps": ps}
    learn = RNNLearner(data, model, metrics=list(metrics), splitter=awd_lstm_clas_split, model_meta=spec,
                       **learner_kwargs)
    return _load_pretrained(learn, pretrained)
