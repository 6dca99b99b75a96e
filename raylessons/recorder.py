"""Recorder: what happened during training (lrs, momentums, losses, metrics) and its PNG plots."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from .callbacks.core import Callback
from .plotting import pyplot as _pyplot
from .plotting import save_figure as _save
from .schedule import SliceSuggestion, SmoothenValue, suggest_slice, trim_finder_curve

__all__ = ["Recorder", "suggest_lr", "plot_finder", "plot_loss_curves", "print_epoch_table", "table_header",
           "table_row"]

log = logging.getLogger("raylessons")


def suggest_lr(lrs, losses, skip_start: int = 10, skip_end: int = 5) -> tuple[float, float]:
    """(steepest-descent lr, min-loss lr / 10) of an LR-finder curve, trimmed as fastai plots it."""
    lrs, losses = trim_finder_curve(lrs, losses, skip_start, skip_end)
    if len(losses) < 2:
        raise ValueError(f"the LR finder recorded {len(losses) + skip_start + skip_end} points; "
                         "too few to suggest a learning rate (use more data or a larger num_it)")
    steepest = int(np.gradient(losses).argmin())
    return float(lrs[steepest]), float(lrs[int(losses.argmin())] / 10)


class Recorder(Callback):
    """Keeps per-batch lrs/momentums/smoothed losses and per-epoch validation results."""

    order = -20

    def __init__(self, verbose: bool = True):
        self.verbose = verbose
        self.lrs, self.moms, self.losses = [], [], []
        self.val_losses, self.metrics, self.nb_batches, self.epoch_rows = [], [], [], []
        self.metric_names: list[str] = []
        self.min_grad_lr = None
        self._bar = None
        self.epoch_offset = 0  # epochs of the plan's earlier stages: a plan's table counts its epochs through

    def before_fit(self, learn) -> None:
        self.lrs, self.moms, self.losses, self.nb_batches = [], [], [], []
        self.val_losses, self.metrics, self.epoch_rows = [], [], []
        self.smoothener = SmoothenValue(0.98)
        self.metric_names = learn.metric_names
        self._bar = None

    def before_epoch(self, learn) -> None:
        self.epoch_start, self.epoch_batches = time.perf_counter(), 0
        if self.verbose and learn.is_main_process and learn.validate_each_epoch and sys.stdout.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=len(learn.data.train_dl), desc=f"epoch {learn.epoch}", leave=False,
                             unit="batch", dynamic_ncols=True)

    def after_batch(self, learn) -> None:
        if not learn.training:
            return
        self.last_loss = learn.loss.detach().item()  # the batch's raw loss: one host sync, shared (TensorBoard)
        self.smooth_loss = self.smoothener.add_value(self.last_loss)
        self.losses.append(self.smooth_loss)
        self.lrs.append(float(learn.current_lrs[-1]))
        self.moms.append(float(learn.current_mom))
        self.epoch_batches += 1
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{self.smooth_loss:.4f}", refresh=False)

    def after_epoch(self, learn) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.nb_batches.append(self.epoch_batches)
        row = {"epoch": self.epoch_offset + learn.epoch,
               "train_loss": self.losses[-1] if self.losses else float("nan")}
        if learn.last_validation is not None:
            val_loss, mets = learn.last_validation
            self.val_losses.append(val_loss)
            self.metrics.append(mets)
            row["valid_loss"] = val_loss
            row.update(dict(zip(self.metric_names, mets)))
        row["time"] = time.perf_counter() - self.epoch_start
        self.epoch_rows.append(row)
        if self.verbose and learn.is_main_process and learn.validate_each_epoch:
            self._print_row(row)

    def after_fit(self, learn) -> None:
        if self._bar is not None:  # a fit cut short (the LR finder stops one mid-epoch)
            self._bar.close()
            self._bar = None

    def _print_row(self, row: dict) -> None:
        # one table per learner: later fits (the plan's next stages) add rows under the same header
        if getattr(self, "_printed_header", None) != list(row):
            print(table_header(row), flush=True)
            self._printed_header = list(row)
        print(table_row(row), flush=True)

    # ----- plots (PNG files; matplotlib's Agg backend, no display needed)
    def plot(self, path: str | Path = "lr_find.png", skip_start: int = 10, skip_end: int = 5,
             suggestion: bool = True, marks: dict[str, float] | None = None):
        """LR-finder curve; with suggestion=True returns (steepest lr, min-loss lr / 10) and marks them."""
        result = None
        if suggestion:
            result = suggest_lr(self.lrs, self.losses, skip_start, skip_end)
            self.min_grad_lr = result[0]
            print(f"Min numerical gradient: {result[0]:.2E}\nMin loss divided by 10: {result[1]:.2E}")
        plot_finder(self.lrs, self.losses, path, steepest=result[0] if result else None, marks=marks,
                    skip_start=skip_start, skip_end=skip_end)
        return result

    def plot_slice(self, path: str | Path, stage1_lr: float, divisor: float = 5.0, skip_start: int = 10,
                   skip_end: int = 5) -> SliceSuggestion:
        """The unfrozen-stage finder curve with `suggest_slice`'s knee and slice(lower, upper) marked."""
        sug = suggest_slice(self.lrs, self.losses, stage1_lr, divisor, skip_start, skip_end)
        plot_finder(self.lrs, self.losses, path, slice_suggestion=sug, skip_start=skip_start, skip_end=skip_end)
        return sug

    def plot_losses(self, path: str | Path = "losses.png") -> Path:
        """Smoothed train loss per batch and validation loss at each epoch's end."""
        ends = np.cumsum(self.nb_batches)
        per_epoch = [self.losses[s:e] for s, e in zip(np.r_[0, ends[:-1]], ends)]
        return plot_loss_curves(per_epoch, self.val_losses, [0] * len(per_epoch), path)

    def plot_lr(self, path: str | Path = "lr.png", show_moms: bool = False) -> Path:
        """The last group's lr per iteration, and the momentum beside it with show_moms=True."""
        plt = _pyplot()
        fig, axs = plt.subplots(1, 2 if show_moms else 1, figsize=(12 if show_moms else 6, 4))
        axs = np.atleast_1d(axs)
        axs[0].plot(self.lrs)
        axs[0].set(xlabel="Iterations", ylabel="Learning Rate")
        if show_moms:
            axs[1].plot(self.moms)
            axs[1].set(xlabel="Iterations", ylabel="Momentum")
        return _save(fig, path)

    def plot_metrics(self, path: str | Path = "metrics.png") -> Path:
        """Each metric against the epoch."""
        if not self.metrics:
            raise ValueError("no metrics recorded yet: fit with validation first")
        plt = _pyplot()
        n = len(self.metric_names)
        fig, axs = plt.subplots(n, 1, figsize=(6, 3 * n))
        for i, ax in enumerate(np.atleast_1d(axs)):
            ax.plot([m[i] for m in self.metrics])
            ax.set(xlabel="Epoch", ylabel=self.metric_names[i])
        return _save(fig, path)


def table_header(row: dict) -> str:
    """The header line of the epoch-metrics table (fastai's columns: epoch, losses, metrics, time)."""
    return "  ".join(f"{k:>12}" for k in row)


def table_row(row: dict) -> str:
    """One epoch's line of the epoch-metrics table."""
    cells = [f"{v:>12d}" if isinstance(v, int) else f"{v:>12.6f}" for k, v in row.items() if k != "time"]
    return "  ".join(cells + [f"{row['time']:>11.1f}s"])


def print_epoch_table(rows: list[dict]) -> None:
    """The whole epoch table of a run at once (what the driver prints for a Ray Train run)."""
    for i, row in enumerate(rows):
        if i == 0 or list(row) != list(rows[i - 1]):
            print(table_header(row))
        print(table_row(row))
    sys.stdout.flush()


def plot_loss_curves(batch_losses: list[list[float]], valid_losses: list, stages: list[int], path: str | Path) -> Path:
    """Train loss per batch and validation loss per epoch (one list of batch losses, one valid loss and the stage
    of each epoch), with a dotted line where a new stage of the plan starts."""
    plt = _pyplot()
    fig, ax = plt.subplots()
    ends = np.cumsum([len(b) for b in batch_losses])
    ax.plot(np.arange(int(ends[-1]) if len(ends) else 0), [v for b in batch_losses for v in b], label="Train")
    valid = [(e, v) for e, v in zip(ends, valid_losses) if v is not None and np.isfinite(v)]
    if valid:
        ax.plot(*zip(*valid), marker="o", label="Validation")
    for i in range(1, len(stages)):
        if stages[i] != stages[i - 1]:
            ax.axvline(ends[i - 1], color="gray", linestyle=":", linewidth=1)
            ax.text(ends[i - 1], ax.get_ylim()[1], f" stage {stages[i]}", va="top", fontsize=8, color="gray")
    ax.set(xlabel="Batches processed", ylabel="Loss")
    ax.legend()
    return _save(fig, path)


def plot_finder(lrs, losses, path: str | Path, *, steepest: float | None = None,
                slice_suggestion: SliceSuggestion | None = None, marks: dict[str, float] | None = None,
                skip_start: int = 10, skip_end: int = 5) -> Path:
    """An LR-finder curve (trimmed by `trim_finder_curve`, non-finite losses left out) as a PNG, with the
    frozen-stage steepest lr, the unfrozen-stage slice (knee dot, lower/upper lines) and `marks` (dashed
    vertical lines, {label: lr}) drawn when given."""
    plt = _pyplot()
    lrs, losses = trim_finder_curve(lrs, losses, skip_start, skip_end)
    losses = np.where(np.isfinite(losses), losses, np.nan)
    fig, ax = plt.subplots()
    ax.plot(lrs, losses)
    ax.set(xscale="log", xlabel="Learning Rate", ylabel="Loss")

    def dot(lr, color, label):
        i = int(np.argmin(np.abs(np.log(lrs) - np.log(lr))))
        ax.plot(lrs[i], losses[i], "o", color=color, label=f"{label} {lr:.2e}")

    if steepest is not None:
        dot(steepest, "tab:orange", "steepest")
    if slice_suggestion is not None:
        s = slice_suggestion
        if s.knee is not None:
            dot(s.knee, "red", "knee")
        ax.axvspan(s.lower, s.upper, color="tab:green", alpha=0.15)
        ax.axvline(s.lower, color="tab:green", linestyle="--", label=f"lower {s.lower:.2e}")
        ax.axvline(s.upper, color="tab:purple", linestyle="--", label=f"upper {s.upper:.2e}")
    for i, (label, lr) in enumerate((marks or {}).items()):  # each its own colour, after the curve's
        ax.axvline(lr, linestyle="--", color=f"C{i + 3}", label=f"{label} {lr:.2e}")
    if steepest is not None or slice_suggestion is not None or marks:
        ax.legend()
    return _save(fig, path)
