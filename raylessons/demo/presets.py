"""The demo's sizes (`--smoke`, the default, `--full`) and the targets each workflow must reach."""
from __future__ import annotations

__all__ = ["PRESETS", "TARGETS", "SENTIMENT_EXAMPLES", "FULL", "DEFAULT", "SMOKE"]

# From scratch, with a few hundred frames, warps and rotations cost the head-pose regressor more epochs than the
# default demo has; zoom, flips and lighting stay. Measured at 48x64, bs 16, 12 epochs, the demo's own runs (seeds
# 0 and 1): 30 frames a person ended at valid MSE 0.0070 and 0.0044; without zoom 0.0091 and 0.0123; 20 frames a
# person 0.0114 and 0.0090-0.012; the lesson's whole get_transforms() at bs 32, 0.030. `--full` keeps
# get_transforms() and trains longer at a larger size instead.
_HEAD_POSE_TFMS = {"max_warp": 0.0, "max_rotate": 0.0}

# `--full`: the sizes of the first demo (about 25 minutes here, every run through Ray Train)
FULL = {
    "planet": dict(n=1200, image_size=64, size=48, bs=32, arch="resnet18", stage1_epochs=1, stage2_epochs=6,
                   finder_iters=100, num_workers=1),
    # the lesson's two stages (frozen, pct_start 0.9; unfrozen with slice(lr/400, lr/4), pct_start 0.8) at 48x64
    "camvid": dict(n=100, image_size=(96, 128), size=[48, 64], bs=8, arch="resnet18", lr=1e-2,
                   stage1_epochs=4, stage2_epochs=4, finder_iters=40, num_workers=1),
    # from scratch, localising a head needs more resolution and epochs than the lesson's pretrained 5 epochs
    # (measured: 12 epochs ended at MSE 0.0117, 16 epochs at 0.0033)
    "head_pose": dict(frames=20, image_size=(120, 160), size=[96, 128], bs=32, arch="resnet18", lr=5e-3,
                      epochs=16, ps=0.0, tfms={}, finder_iters=40, num_workers=1),
    # ULMFiT at small sizes (2-layer AWD-LSTM, emb 64, hidden 128): pretrain on a general corpus (the WT103
    # stand-in), fine-tune on every review, then the classifier on the fine-tuned encoder. The lesson's gradual
    # unfreezing starts at the head; from a small LM the encoder itself must still learn which adjective is which,
    # so after one head epoch the whole model trains at one rate with little dropout.
    "sentiment": dict(n_train=2000, n_test=1000, n_unsup=1000, n_docs=2000,
                      model={"emb_sz": 64, "n_hid": 128, "n_layers": 2}, lm_bs=64,
                      pretrain_epochs=2, pretrain_lr=1e-2, lm_head_epochs=1, lm_epochs=4, lm_lr=3e-3,
                      clas_bs=32, clas_drop=0.1, head_lr=2e-2, clas_epochs=5, clas_lr=1e-2, finder_iters=40,
                      num_workers=1),
    # the sweep runs on the Planet section's data with the lesson plan's epoch budget (like with like)
    "sweep": dict(trials=4, max_concurrent=2, finder_iters=60),
}
# the default: the same workflows sized for about six minutes on 2 CPU cores. One Ray Train run (Planet's lesson
# plan), one Tune sweep under ASHA on the same data and budget, one Serve application; the other runs train in
# this process (num_workers=0: the same plan, checkpoints and export, without a TorchTrainer's start-up)
DEFAULT = {
    # measured (in this process, seeds 0 and 1): 1 + 4 epochs ended at fbeta 0.858 and 0.870, 1 + 5 at 0.883, 0.879
    "planet": dict(n=600, image_size=64, size=32, bs=32, arch="resnet18", stage1_epochs=1, stage2_epochs=5,
                   finder_iters=30, num_workers=1),
    # measured for two seeds: 80 frames, 3 + 4 epochs ended at 0.877 and 0.913; 60 frames, 3 + 5 at 0.871 and 0.851
    "camvid": dict(n=80, image_size=(96, 128), size=[48, 64], bs=8, arch="resnet18", lr=1e-2,
                   stage1_epochs=3, stage2_epochs=4, finder_iters=20, num_workers=0),
    "head_pose": dict(frames=30, image_size=(120, 160), size=[48, 64], bs=16, arch="resnet18", lr=5e-3,
                      epochs=12, ps=0.0, tfms=_HEAD_POSE_TFMS, finder_iters=20, num_workers=0),
    "sentiment": dict(n_train=1200, n_test=600, n_unsup=400, n_docs=1000,
                      model={"emb_sz": 64, "n_hid": 128, "n_layers": 2}, lm_bs=64,
                      pretrain_epochs=2, pretrain_lr=1e-2, lm_head_epochs=1, lm_epochs=2, lm_lr=3e-3,
                      clas_bs=32, clas_drop=0.1, head_lr=2e-2, clas_epochs=4, clas_lr=1e-2, finder_iters=30,
                      num_workers=0),
    "sweep": dict(trials=4, max_concurrent=2, finder_iters=30),
}
# `--smoke`: tiny data, one epoch per stage, every layer (the test suite runs it)
SMOKE = {
    "planet": dict(n=64, image_size=32, size=32, bs=16, arch="resnet18", stage1_epochs=1, stage2_epochs=1,
                   finder_iters=20, num_workers=1),
    "camvid": dict(n=10, image_size=(48, 64), size=[32, 32], bs=4, arch="resnet18", lr=1e-2,
                   stage1_epochs=1, stage2_epochs=1, finder_iters=8, num_workers=0),
    "head_pose": dict(frames=2, image_size=(60, 80), size=[32, 32], bs=16, arch="resnet18", lr=5e-3,
                      epochs=1, ps=0.0, tfms=_HEAD_POSE_TFMS, finder_iters=8, num_workers=0),
    "sentiment": dict(n_train=60, n_test=40, n_unsup=20, n_docs=60,
                      model={"emb_sz": 16, "n_hid": 32, "n_layers": 1}, lm_bs=8,
                      pretrain_epochs=1, pretrain_lr=1e-2, lm_head_epochs=1, lm_epochs=1, lm_lr=3e-3,
                      clas_bs=8, clas_drop=0.1, head_lr=2e-2, clas_epochs=1, clas_lr=1e-2, finder_iters=8,
                      num_workers=0),
    "sweep": dict(trials=2, max_concurrent=2, finder_iters=20),
}
PRESETS = {"full": FULL, "default": DEFAULT, "smoke": SMOKE}
# what each workflow must reach on the generated data (checked in the closing summary; not for --smoke)
TARGETS = {"planet": ("fbeta", ">=", 0.85), "camvid": ("acc_camvid", ">=", 0.85),
           "head_pose": ("valid_loss", "<=", 0.01), "sentiment": ("accuracy", ">=", 0.90)}
SENTIMENT_EXAMPLES = ["The acting was great but the plot was dull .",
                      "The plot was dull , but the acting was great !",
                      "I would not call this movie boring . Overall , I loved it .",
                      "In the end , the movie was hardly a gem ."]
