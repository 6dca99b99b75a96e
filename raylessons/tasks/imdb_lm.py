"""IMDB language model (lesson3-imdb, part 1): fine-tune an AWD-LSTM on every review, labels unused."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.text import TextList
from ..text_learner import AWD_LSTM, language_model_learner

__all__ = ["Config", "METRIC", "MODE", "SYNC_BN", "build_source", "build_data", "build_learner", "default_plan",
           "smoke_plan"]

METRIC, MODE = "accuracy", "max"  # next-token accuracy
SYNC_BN = False
MOMS = [0.8, 0.7]  # lower momentum helps RNNs (the lesson)


@dataclass
class Config:
    """Where IMDB is and how to build the LM data and model (the lesson's values by default)."""

    data: str = "~/.raylessons/data/imdb"
    include: list = field(default_factory=lambda: ["train", "test", "unsup"])
    valid_pct: float = 0.1
    seed: int = 42
    bs: int = 48
    bptt: int = 70
    max_vocab: int = 60000
    min_freq: int = 3
    drop_mult: float = 0.3
    on_bad_item: str = "raise"  # "skip": empty reviews are logged and left out
    pretrained: bool | str = False  # True: fastai's WT103; a path: wt103-fwd folder or a `pretrain-lm` export
    model: dict = field(default_factory=dict)  # AWDLSTMConfig overrides, e.g. {"emb_sz": 64, "n_hid": 128}
    size: object = None  # unused (the image tasks' knob); kept so every task takes the same options


def build_source(cfg: Config):
    """TextList.from_folder(path).filter_by_folder(include).split_by_rand_pct(0.1).label_for_lm()."""
    path = Path(cfg.data).expanduser()
    items = TextList.from_folder(path, max_vocab=cfg.max_vocab, min_freq=cfg.min_freq,
                                on_bad_item=cfg.on_bad_item)
    if cfg.include:  # empty: every text under `path` (a flat corpus)
        items = items.filter_by_folder(include=list(cfg.include))
    return items.split_by_rand_pct(cfg.valid_pct, seed=cfg.seed).label_for_lm()


def build_data(cfg: Config, size=None, src=None, bs: int | None = None):
    """The LM stream batches (bs rows of bptt tokens)."""
    src = src if src is not None else build_source(cfg)
    return src.databunch(bs=bs or cfg.bs, bptt=cfg.bptt)


def build_learner(data, cfg: Config, **kwargs):
    """language_model_learner(data, AWD_LSTM, drop_mult=0.3, pretrained=...)."""
    learn = language_model_learner(data, AWD_LSTM, config=cfg.model or None, drop_mult=cfg.drop_mult,
                                   pretrained=cfg.pretrained, **kwargs)
    learn.model_meta["task"] = "imdb_lm"
    return learn


def default_plan() -> list[dict]:
    """The notebook: 1 epoch on the (pretrained-)frozen model at 1e-2, then 10 unfrozen at 1e-3."""
    return [{"freeze": True, "epochs": 1, "max_lr": 1e-2, "moms": MOMS, "save": "fit_head"},
            {"unfreeze": True, "epochs": 10, "max_lr": 1e-3, "moms": MOMS, "save": "fine_tuned"}]


def smoke_plan() -> list[dict]:
    """One frozen and one unfrozen epoch."""
    return [{"freeze": True, "epochs": 1, "max_lr": 1e-2, "moms": MOMS},
            {"unfreeze": True, "epochs": 1, "max_lr": 1e-3, "moms": MOMS}]
