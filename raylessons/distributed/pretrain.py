"""`raylessons pretrain-lm`: a language model pretrained here, for when fastai's WT103 weights cannot be fetched."""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["pretrain_lm", "pretrain_plan"]


def pretrain_plan(epochs: int, lr: float) -> list[dict]:
    """One unfrozen one-cycle over the corpus, with the lesson's RNN momentum."""
    return [{"unfreeze": True, "epochs": epochs, "max_lr": lr, "moms": [0.8, 0.7]}]


def pretrain_lm(args: argparse.Namespace) -> dict:
    """Train the `imdb_lm` task's model on `args.corpus` with Ray Train; the export holds weights + itos."""
    from .train import TrainRun, fit_plan

    corpus = Path(args.corpus).expanduser()
    if args.synth:
        from ..data.synth.imdb import synth_corpus

        synth_corpus(corpus, n_docs=args.synth)
    folders = sorted(p.name for p in corpus.iterdir() if p.is_dir()) if corpus.is_dir() else []
    task_config = {"data": str(corpus), "include": folders or [], "valid_pct": 0.1, "seed": 0, "bs": args.bs,
                   "bptt": args.bptt, "drop_mult": args.drop_mult, "min_freq": 2,
                   "model": {"emb_sz": args.emb_sz, "n_hid": args.n_hid, "n_layers": args.n_layers}}
    run = TrainRun(task="imdb_lm", plan=pretrain_plan(args.epochs, args.lr), task_config=task_config,
                   name=args.name, storage_path=args.storage, num_workers=args.num_workers, use_gpu=args.use_gpu)
    return fit_plan(run)
