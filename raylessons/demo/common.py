"""What every section of the demo does: headings, generated data, a run (Ray Train or here), the lesson's plots."""
from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from ..data.synth import synth
from ..distributed.train import TrainRun, fit_plan, plot_run_losses
from ..learner_io import load_weights
from ..plan import plan_summary

__all__ = ["add_run_pictures", "find_lr", "heading", "synth_once", "train"]


def heading(title: str) -> None:
    """A section heading on the console."""
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)


def synth_once(dataset: str, data_dir: Path, marker: str, **options) -> Path:
    """Generate `dataset` into `data_dir` unless `data_dir / marker` shows an earlier run already did."""
    if not (data_dir / marker).exists():
        synth(dataset, data_dir, **options)
    return data_dir


def train(task: str, cfg, plan: list, out: Path, name: str | None = None, num_workers: int = 1) -> dict:
    """Run `plan` for `task` on Ray Train (`num_workers` workers; 0: in this process), from a fresh run directory."""
    where = "in this process" if num_workers == 0 else f"on Ray Train, {num_workers} worker(s)"
    print(f"plan ({where}): {plan_summary(plan)}", flush=True)
    name = name or f"demo-{task}"
    shutil.rmtree(out / "runs" / name, ignore_errors=True)  # a finished run of the same name would just resume
    return fit_plan(TrainRun(task=task, plan=plan, task_config=asdict(cfg), name=name,
                             storage_path=str(out / "runs"), num_workers=num_workers))


def find_lr(learn, path: Path, num_it: int, used: float | None = None, freeze: bool = True) -> tuple[float, float]:
    """The lesson's `learn.lr_find()` + `learn.recorder.plot()` on the learner frozen as the plan's first stage is;
    the plot marks the steepest slope and the rate the plan uses. Returns (steepest, min loss / 10)."""
    if freeze:
        learn.freeze()
    verbose, learn.recorder.verbose = learn.recorder.verbose, False
    # a short finder over the useful range (fastai's default is 1e-7..10 in 100 batches)
    learn.lr_find(start_lr=1e-5, end_lr=1.0, num_it=num_it)
    learn.recorder.verbose = verbose
    skip = max(1, num_it // 10)
    marks = {"plan's rate": used} if used else None
    try:
        return learn.recorder.plot(path, skip_start=skip, skip_end=skip, marks=marks)
    except ValueError as e:  # the loss diverged within a few batches: too few points for a suggestion
        print(f"no suggestion: {e}")
        learn.recorder.plot(path, skip_start=0, skip_end=0, suggestion=False, marks=marks)
        return float("nan"), float("nan")


def add_run_pictures(section, learn, result: dict, out: Path, stem: str, rows: int = 3) -> None:
    """A run's loss curves and `show_results` of its trained model, written as PNGs and added to the report."""
    losses = plot_run_losses(result["path"], out / f"{stem}_losses.png")
    section.image(losses, "loss curves of the whole plan (train per batch, validation per epoch)")
    shown = load_weights(learn, result["export"]).show_results(rows=rows, path=out / f"{stem}_results.png")
    section.image(shown, "learn.show_results(): validation items, targets and predictions")
