"""IMDB sentiment classifier (lesson3-imdb, part 2): the fine-tuned LM's encoder + gradual unfreezing."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.text import TextList
from ..errors import ConfigError
from ..learner_io import EXPORT_MODEL, read_export_meta
from ..models.awd_lstm import load_lm_checkpoint
from ..data.vocab import Vocab
from ..text_learner import AWD_LSTM, text_classifier_learner

__all__ = ["Config", "METRIC", "MODE", "SYNC_BN", "build_source", "build_data", "build_learner", "default_plan",
           "smoke_plan", "lm_meta"]

METRIC, MODE = "accuracy", "max"
SYNC_BN = False
MOMS = [0.8, 0.7]
_SIZES = ("emb_sz", "n_hid", "n_layers", "pad_token")


@dataclass
class Config:
    """Where IMDB and the fine-tuned LM export are, and how to build the classifier (the lesson's values)."""

    data: str = "~/.raylessons/data/imdb"
    lm_export: str = ""  # the export of the LM run (jobs/imdb_lm.py): its vocab and encoder are used
    train: str = "train"
    valid: str = "test"
    classes: list = field(default_factory=lambda: ["neg", "pos"])
    bs: int = 48
    drop_mult: float = 0.5
    on_bad_item: str = "raise"  # "skip": empty reviews are logged and left out
    model: dict = field(default_factory=dict)  # dropout overrides; sizes always come from the LM
    size: object = None  # unused (the image tasks' knob)
    pretrained: bool | str = False  # unused: the encoder comes from lm_export


def lm_meta(cfg: Config) -> dict:
    """The LM export's metadata (vocab and model sizes); a missing or non-LM export is a clear error."""
    if not cfg.lm_export:
        raise ConfigError("the classifier needs lm_export: the export directory of the fine-tuned language model")
    meta = read_export_meta(Path(cfg.lm_export).expanduser())
    if meta.get("label_kind") != "lm" or "itos" not in meta:
        raise ConfigError(f"{cfg.lm_export} is not a language-model export (label_kind {meta.get('label_kind')!r})")
    return meta


def build_source(cfg: Config):
    """TextList.from_folder(path, vocab=data_lm.vocab).split_by_folder(valid='test').label_from_folder(classes)."""
    vocab = Vocab(lm_meta(cfg)["itos"])
    path = Path(cfg.data).expanduser()
    return (TextList.from_folder(path, vocab=vocab, on_bad_item=cfg.on_bad_item)
            .split_by_folder(train=cfg.train, valid=cfg.valid)
            .label_from_folder(classes=list(cfg.classes)))


def build_data(cfg: Config, size=None, src=None, bs: int | None = None):
    """Sortish, start-padded classifier batches."""
    src = src if src is not None else build_source(cfg)
    return src.databunch(bs=bs or cfg.bs)


def build_learner(data, cfg: Config, **kwargs):
    """text_classifier_learner(data, AWD_LSTM, drop_mult=0.5) + the LM's encoder (load_encoder), frozen."""
    meta = lm_meta(cfg)
    sizes = {k: v for k, v in meta["model"]["config"].items() if k in _SIZES}
    learn = text_classifier_learner(data, AWD_LSTM, config={**sizes, **cfg.model} if sizes or cfg.model else None,
                                    drop_mult=cfg.drop_mult, **kwargs)
    load_lm_checkpoint(learn.model, Path(cfg.lm_export).expanduser() / EXPORT_MODEL)  # the encoder part only
    learn.freeze()
    learn.model_meta["task"] = "imdb_clas"
    return learn


def default_plan() -> list[dict]:
    """The notebook's gradual unfreezing: head, then freeze_to(-2), freeze_to(-3), unfreeze; lrs / 2.6^4."""
    def sl(lr: float) -> str:
        return f"slice({lr / 2.6 ** 4:.6g}, {lr:g})"

    return [{"freeze": True, "epochs": 1, "max_lr": 2e-2, "moms": MOMS, "save": "first"},
            {"freeze_to": -2, "epochs": 1, "max_lr": sl(1e-2), "moms": MOMS, "save": "second"},
            {"freeze_to": -3, "epochs": 1, "max_lr": sl(5e-3), "moms": MOMS, "save": "third"},
            {"unfreeze": True, "epochs": 2, "max_lr": sl(1e-3), "moms": MOMS}]


def smoke_plan() -> list[dict]:
    """The head, then freeze_to(-2), one epoch each."""
    return [{"freeze": True, "epochs": 1, "max_lr": 2e-2, "moms": MOMS},
            {"freeze_to": -2, "epochs": 1, "max_lr": "slice(0.000218828, 0.01)", "moms": MOMS}]
