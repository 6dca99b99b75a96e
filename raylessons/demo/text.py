"""The demo's ULMFiT workflow: pretrain a language model, fine-tune it on the reviews, train the classifier."""
from __future__ import annotations

from pathlib import Path

from ..data.synth.imdb import synth_corpus
from ..distributed.pretrain import pretrain_plan
from ..learner_io import load_weights
from ..tasks import TASKS
from ..tasks.imdb_lm import MOMS
from ..text_baseline import bag_of_words_accuracy, unigram_accuracy
from .common import add_run_pictures, find_lr, heading, synth_once, train

__all__ = ["demo_sentiment"]


def demo_sentiment(out: Path, p: dict, report) -> dict:
    """ULMFiT on generated IMDB: a corpus LM (the WT103 stand-in), the IMDB LM, then the classifier on its encoder."""
    imdb_lm, imdb_clas, moms = TASKS["imdb_lm"], TASKS["imdb_clas"], MOMS
    section = report.section("Sentiment: ULMFiT on IMDB")
    heading("Sentiment: generated IMDB and a general corpus")
    data_dir = synth_once("imdb", out / "data" / "imdb", "README", n_train=p["n_train"], n_test=p["n_test"],
                          n_unsup=p["n_unsup"], n_sample=100, seed=0)
    corpus = out / "data" / "corpus"
    if not (corpus / "README").is_file():
        synth_corpus(corpus, n_docs=p["n_docs"], seed=0)
    print(f"{data_dir}: {p['n_train']} train / {p['n_test']} test / {p['n_unsup']} unsup reviews; "
          f"{corpus}: {p['n_docs']} documents")

    heading("Sentiment: pretrain a language model on the corpus (the WT103 stand-in, `raylessons pretrain-lm`)")
    pre_cfg = imdb_lm.Config(data=str(corpus), include=[], bs=p["lm_bs"], min_freq=2, model=p["model"])
    pre = train("imdb_lm", pre_cfg, pretrain_plan(p["pretrain_epochs"], p["pretrain_lr"]), out,
                name="demo-pretrain-lm", num_workers=p["num_workers"])
    print(f"corpus LM next-token accuracy {pre['metrics']['accuracy']:.4f}; export: {pre['export']}")

    heading("Sentiment: fine-tune the language model on every review")
    lm_cfg = imdb_lm.Config(data=str(data_dir), bs=p["lm_bs"], model=p["model"], pretrained=pre["export"])
    data_lm = imdb_lm.build_data(lm_cfg)
    unigram = unigram_accuracy(data_lm.train_ds.ids, data_lm.valid_ds.ids)
    print(data_lm)
    section.table(data_lm.show_batch(rows=4, show=False), "data_lm.show_batch(): bptt windows of the review stream")
    plan = [{"freeze": True, "epochs": p["lm_head_epochs"], "max_lr": 1e-2, "moms": moms},
            {"unfreeze": True, "epochs": p["lm_epochs"], "max_lr": p["lm_lr"], "moms": moms}]
    lm = train("imdb_lm", lm_cfg, plan, out, num_workers=p["num_workers"])
    lm["unigram_accuracy"] = unigram
    print(f"IMDB LM next-token accuracy {lm['metrics']['accuracy']:.4f} "
          f"(unigram baseline, always the most frequent token: {unigram:.4f}); export: {lm['export']}")
    section.note(f"Language model: next-token accuracy {pre['metrics']['accuracy']:.4f} on the general corpus, "
                 f"{lm['metrics']['accuracy']:.4f} on the reviews after fine-tuning (always guessing the most "
                 f"frequent token: {unigram:.4f}).")
    lm_learner = load_weights(imdb_lm.build_learner(data_lm, lm_cfg), lm["export"])
    section.image(lm_learner.show_results(rows=4, path=out / "imdb_lm_results.png"),
                  "the fine-tuned LM's show_results(): the next words and its guess for each")

    heading("Sentiment: classifier on the fine-tuned encoder")
    clas_cfg = imdb_clas.Config(data=str(data_dir), lm_export=lm["export"], bs=p["clas_bs"], drop_mult=p["clas_drop"])
    data_clas = imdb_clas.build_data(clas_cfg)
    print(data_clas)
    section.table(data_clas.show_batch(rows=4, show=False), "data_clas.show_batch()")

    def labels(ds):
        return [ds.label.c2i[r] for r in ds.label.raw]

    bow = bag_of_words_accuracy(data_clas.train_ds.ids, labels(data_clas.train_ds), data_clas.valid_ds.ids,
                                labels(data_clas.valid_ds), len(data_clas.vocab))
    print(f"bag-of-words baseline (word counts, no order, so no negation): validation accuracy {bow:.4f}")
    learn = imdb_clas.build_learner(data_clas, clas_cfg)
    find_lr(learn, out / "imdb_clas_lr_find.png", p["finder_iters"], used=p["head_lr"])
    section.image(out / "imdb_clas_lr_find.png", f"the classifier's lr_find() with the encoder frozen; its first "
                                                 f"stage uses {p['head_lr']:g}")
    plan = [{"freeze": True, "epochs": 1, "max_lr": p["head_lr"], "moms": moms},
            {"unfreeze": True, "epochs": p["clas_epochs"], "max_lr": p["clas_lr"], "moms": moms}]
    result = train("imdb_clas", clas_cfg, plan, out, num_workers=p["num_workers"])
    result.update(lm=lm, pretrain=pre, bow_accuracy=bow)
    print(f"Sentiment validation accuracy {result['metrics']['accuracy']:.4f} (bag of words {bow:.4f}); "
          f"export: {result['export']}")
    section.note(f"Classifier: validation accuracy {result['metrics']['accuracy']:.4f}; a bag of words, which "
                 f"cannot read negation, reaches {bow:.4f}.")
    add_run_pictures(section, learn, result, out, "imdb_clas", rows=6)
    return result
