"""TensorBoard event files of a learner's training (torch.utils.tensorboard's SummaryWriter, imported on first use).

Tags (`tensorboard --logdir <dir>`, Scalars and Images tabs):

- `train/loss`: the training loss of every batch; step: training batches so far, over all fits of the callback
- `valid/loss`, `metrics/<metric name>`: every epoch's validation; step: epochs so far, over all fits
- `lr/group_<i>`, `mom/group_<i>`: each layer group's lr and momentum (Adam's beta1) at the epoch's last batch;
  step: the epoch, as above
- `lr_find/loss`, `lr_find/lr`: an LR-finder run's smoothed loss and lr (the last group's) per iteration (step);
  the callback's later finder runs are `lr_find_2/...`, `lr_find_3/...` (a tag's steps never go back)
- `show_batch`: once (at the callback's first fit; not again after a resume), a grid of the first training batch's
  images in [0, 1]; text data gets a few decoded training documents as text under the same tag instead

LR-finder batches go to `lr_find*` only: they are not counted in `train/loss`'s steps nor in the epochs.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .core import Callback
from .lr_finder import LRFinder

__all__ = ["TensorBoardCallback", "default_log_dir", "SHOW_BATCH_TAG"]

SHOW_BATCH_TAG = "show_batch"
SHOW_IMAGES, SHOW_TEXTS, SHOW_TOKENS = 16, 4, 60


def default_log_dir(path: str | Path) -> Path:
    """`path/runs/<local time>`: where `Learner.log_to_tensorboard` writes unless told otherwise."""
    return Path(path) / "runs" / _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


class TensorBoardCallback(Callback):
    """Writes the tags above to `log_dir` from the main process only (DDP ranks > 0 write nothing).

    `batch_step` / `epoch_step` are the steps the first logged batch and epoch get (a run resumed from a checkpoint
    continues its counts); with `resume=True` TensorBoard hides what earlier writers of `log_dir` logged at steps
    >= `batch_step` (the epoch a failure cut short; replayed after the restart) and show_batch is not written again
    (the directory has it). Flushed after every epoch and fit; `close()` ends the writer (a later fit opens a new
    event file in the same directory).
    """

    order = 5  # after the recorder and the schedulers, before run_plan's epoch hook (the checkpoint)

    def __init__(self, log_dir: str | Path, batch_step: int = 0, epoch_step: int = 0, resume: bool = False):
        self.log_dir = Path(log_dir)
        self.batch_step, self.epoch_step = int(batch_step), int(epoch_step)
        self.purge_step = int(batch_step) if resume else None
        self.writer = None
        self.finder_runs = 0
        self._shown, self._active, self._finder = resume, False, False

    # ----- the writer
    def _open(self):
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter  # here: `import raylessons` stays light

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(self.log_dir), purge_step=self.purge_step)
            self.purge_step = None  # only the first writer after a restart purges
        return self.writer

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file (a later fit opens a new one)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # ----- the events
    def before_fit(self, learn) -> None:
        self._active = bool(getattr(learn, "is_main_process", True))
        if not self._active:
            return
        self._finder = any(isinstance(cb, LRFinder) for cb in getattr(learn, "_active_cbs", ()))
        writer = self._open()
        if not self._shown:
            self._shown = True
            write_show_batch(writer, learn.data)

    def after_batch(self, learn) -> None:
        if not (self._active and learn.training) or self._finder:
            return
        # the recorder (order -20) has read this batch's loss already: no second device sync per batch
        self.writer.add_scalar("train/loss", learn.recorder.last_loss, self.batch_step)
        self.batch_step += 1

    def after_epoch(self, learn) -> None:
        if not self._active or self._finder:
            return
        w, step = self.writer, self.epoch_step
        if learn.last_validation is not None:
            val_loss, mets = learn.last_validation
            w.add_scalar("valid/loss", float(val_loss), step)
            for name, value in zip(learn.metric_names, mets):
                w.add_scalar(f"metrics/{name}", float(value), step)
        for i, group in enumerate(learn.opt.param_groups if learn.opt is not None else []):
            w.add_scalar(f"lr/group_{i}", float(group["lr"]), step)
            mom = group["betas"][0] if "betas" in group else group.get("momentum")
            if mom is not None:
                w.add_scalar(f"mom/group_{i}", float(mom), step)
        self.epoch_step += 1
        w.flush()

    def after_fit(self, learn) -> None:
        if not self._active:
            return
        if self._finder:  # the whole curve from the recorder (the finder stops the fit before later callbacks see
            self.finder_runs += 1  # the last batch)
            prefix = "lr_find" if self.finder_runs == 1 else f"lr_find_{self.finder_runs}"
            rec = learn.recorder
            for i, (lr, loss) in enumerate(zip(rec.lrs, rec.losses)):
                self.writer.add_scalar(f"{prefix}/loss", float(loss), i)
                self.writer.add_scalar(f"{prefix}/lr", float(lr), i)
        self._finder = False
        self.flush()


def write_show_batch(writer, data) -> None:
    """The first training batch's images (at most SHOW_IMAGES, one grid) or a few decoded texts, as `show_batch`."""
    ds = getattr(data, "train_ds", None)
    if ds is not None and hasattr(ds, "vocab") and hasattr(ds, "text"):  # text: no batch to draw
        texts = [" ".join(ds.text(i).split()[:SHOW_TOKENS]) for i in range(min(SHOW_TEXTS, len(ds)))]
        if texts:
            writer.add_text(SHOW_BATCH_TAG, "\n\n".join(f"{i}. {t}" for i, t in enumerate(texts)), 0)
        return
    if not hasattr(data, "one_batch"):
        return
    import torch  # here: the callbacks (and the plans that import them) load without torch

    # the batch drawn here (shuffling, augmentation) leaves the fit's random numbers as they were
    with torch.random.fork_rng(devices=[]):
        try:
            xb, _ = data.one_batch(train=True)
        except StopIteration:  # no training batch
            return
    if isinstance(xb, torch.Tensor) and xb.is_floating_point() and xb.dim() == 4 and xb.shape[1] in (1, 3):
        # one_batch is the batch before normalisation (DataBunch normalises on the device): already in [0, 1]
        writer.add_images(SHOW_BATCH_TAG, xb[:SHOW_IMAGES].float().clamp(0, 1), 0, dataformats="NCHW")
