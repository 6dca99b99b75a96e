"""IMDB language model (lesson3-imdb, part 1): fine-tune an AWD-LSTM on every review, labels unused."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.text import TextList
from ..text_learner import AWD_LSTM, language_model_learner
from .task import HeldOutTest, Task

__all__ = ["MOMS", "TASK", "Config", "build_data", "build_learner", "build_source", "default_plan", "smoke_plan"]

MOMS = [0.8, 0.7]  # lower momentum helps RNNs (the lesson)


@dataclass
class Config(HeldOutTest):
    """Where IMDB is and how to build the LM data and model (the lesson's values by default)."""

    data: str = field(default="~/.raylessons/data/imdb", metadata={
        "help": "dataset root (the real layout or a generated look-alike)", "required": True})
    include: list = field(default_factory=lambda: ["train", "test", "unsup"], metadata={
        "help": "the folders whose texts the LM reads, as JSON ([]: every text under data)"})
    valid_pct: float = field(default=0.1, metadata={"help": "share of the texts held out for validation"})
    seed: int = field(default=42, metadata={"help": "seed of the random validation split"})
    bs: int = field(default=48, metadata={"help": "batch size (rows of the token stream)"})
    bptt: int = field(default=70, metadata={"help": "tokens per row of a batch (back-propagation through time)"})
    max_vocab: int = field(default=60000, metadata={"help": "the vocabulary's size at most"})
    min_freq: int = field(default=3, metadata={"help": "a token seen fewer times is unknown"})
    drop_mult: float = field(default=0.3, metadata={"help": "scales every dropout of the AWD-LSTM"})
    on_bad_item: str = field(default="raise", metadata={
        "help": "raise, or skip (log and leave out) empty reviews", "choices": ("raise", "skip")})
    pretrained: bool | str = field(default=False, metadata={
        "help": "true (fastai's WT103), false, or a wt103-fwd folder or a pretrain-lm export"})
    model: dict = field(default_factory=dict, metadata={
        "help": 'AWDLSTMConfig overrides, as JSON, e.g. {"emb_sz": 64, "n_hid": 128}'})


def build_source(cfg: Config):
    """TextList.from_folder(path).filter_by_folder(include).split_by_rand_pct(0.1).label_for_lm()."""
    path = Path(cfg.data).expanduser()
    items = TextList.from_folder(path, max_vocab=cfg.max_vocab, min_freq=cfg.min_freq,
                                on_bad_item=cfg.on_bad_item)
    if cfg.include:  # empty: every text under `path` (a flat corpus)
        items = items.filter_by_folder(include=list(cfg.include))
    # the classifier's test reviews stay out of the LM's corpus too (the same names hash the same way)
    return items.split_by_rand_pct(cfg.valid_pct, seed=cfg.seed).hold_out(cfg.test_pct, use=cfg.split).label_for_lm()


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


# the metric is next-token accuracy; `raylessons sweep` offers the classifier (imdb_clas), not the LM
TASK = Task("imdb_lm", Config, build_source, build_data, build_learner,
            plans={"lesson": default_plan, "smoke": smoke_plan}, metric="accuracy", mode="max", sweep=False)
