"""`raylessons pretrain-lm`: a language model pretrained here, for when fastai's WT103 weights cannot be fetched."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.synth.imdb import synth_corpus
from .train import TrainRun, fit_plan

__all__ = ["PretrainLM", "pretrain_lm", "pretrain_plan"]


@dataclass
class PretrainLM:
    """The corpus, model size and schedule of a pretraining run (the options of `raylessons pretrain-lm`)."""

    corpus: str = field(metadata={"help": "folder of .txt documents (train/ and valid/ or flat)"})
    synth: int = field(default=0, metadata={
        "help": "first generate an English-like corpus of N_DOCS documents there (offline stand-in for WT103)",
        "metavar": "N_DOCS"})
    epochs: int = field(default=4, metadata={"help": "epochs of the one-cycle"})
    lr: float = field(default=3e-3, metadata={"help": "its top learning rate"})
    bs: int = field(default=32, metadata={"help": "batch size (rows of the token stream)"})
    bptt: int = field(default=70, metadata={"help": "tokens per row of a batch"})
    emb_sz: int = field(default=400, metadata={"help": "embedding size"})
    n_hid: int = field(default=1152, metadata={"help": "hidden size of the LSTM layers"})
    n_layers: int = field(default=3, metadata={"help": "LSTM layers"})
    drop_mult: float = field(default=0.1, metadata={"help": "scales every dropout of the AWD-LSTM"})


def pretrain_plan(epochs: int, lr: float) -> list[dict]:
    """One unfrozen one-cycle over the corpus, with the lesson's RNN momentum."""
    return [{"unfreeze": True, "epochs": epochs, "max_lr": lr, "moms": [0.8, 0.7]}]


def pretrain_lm(cfg: PretrainLM, **run_options) -> dict:
    """Train the `imdb_lm` task's model on `cfg.corpus` with Ray Train (`run_options`: TrainRun's, e.g.
    `num_workers`, `storage_path`, `name`); the export holds weights + itos."""
    corpus = Path(cfg.corpus).expanduser()
    if cfg.synth:
        synth_corpus(corpus, n_docs=cfg.synth)
    folders = sorted(p.name for p in corpus.iterdir() if p.is_dir()) if corpus.is_dir() else []
    task_config = {"data": str(corpus), "include": folders or [], "valid_pct": 0.1, "seed": 0, "bs": cfg.bs,
                   "bptt": cfg.bptt, "drop_mult": cfg.drop_mult, "min_freq": 2,
                   "model": {"emb_sz": cfg.emb_sz, "n_hid": cfg.n_hid, "n_layers": cfg.n_layers}}
    run = TrainRun(**{"name": "pretrain-lm", **run_options, "task": "imdb_lm", "task_config": task_config,
                      "plan": pretrain_plan(cfg.epochs, cfg.lr)})
    return fit_plan(run)
