"""The two LR finders a sweep starts from, run once as Ray tasks before any trial.

1. frozen: the task's learner frozen to its last layer group (`freeze()`, as a plan's frozen first stage trains
   it, pretrained or not), `lr_find()`; the guide is the steepest slope of the smoothed loss (fastai's "min
   numerical gradient"), clamped to a sane range. On a flat curve (the loss never falls by `MIN_DESCENT` of its
   value before it shoots up, as a random body under a fresh head often gives) the steepest slope is noise, and
   the guide is the lesson's other rule: a decade before the loss shoots up (`frozen_guide`).
2. unfrozen: the lesson's order: `fit_one_cycle(warmup_epochs, slice(stage1_lr))` frozen, `unfreeze()`,
   `lr_find()`; the guide is `suggest_slice` (one decade before the loss shoots up, up to stage1_lr / divisor),
   on the curve untrimmed at the end (the finder stops just after the loss passes 4x its best).

Each writes its PNG (the curve with its suggestion marked) and both curves and values go to `finders.json` (with
the seconds both took), all in the experiment's directory.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, RaylessonsError
from ..recorder import plot_finder, suggest_lr
from ..schedule import find_knee, suggest_slice, trim_finder_curve
from ..tasks import get_task

__all__ = ["run_finders", "frozen_guide", "finder_skips", "FINDERS_FILE", "MIN_DESCENT"]

FINDERS_FILE = "finders.json"
# the share of its value that the smoothed loss must lose, from the trimmed curve's start to its minimum, for the
# steepest slope to mean something. Measured on the bench's curves (bench/sweep_vs_lesson.py): Planet's frozen
# curves fall 14-16 %, while CamVid's (2-5 %), head pose's (3-6 %) and the text classifier's (0-2 %) stay flat
# until they shoot up, and their steepest slopes sit in the noise (head pose: 1e-5, where 2e-2 trains well).
MIN_DESCENT = 0.10


def finder_skips(n_points: int, which: str) -> tuple[int, int]:
    """How much of a finder curve of `n_points` to drop before reading it: fastai's first 10 and last 5 points when
    at least 5 remain, as they do when the finder runs its `finder_iters` >= 20 batches. A finder that stopped early
    (its loss passed 4x its best within a few batches: the rate where it shoots up is low) drops only its first
    quarter, so the rise it found is still read. Too short even for that: a ConfigError saying what to change."""
    if n_points >= 20:
        return 10, 5
    if n_points >= 4:
        return n_points // 4, 0
    raise ConfigError(f"the {which} LR finder stopped after {n_points} batches (its loss passed 4x its best at "
                      "once): too few points to read a rate from; give it more data per batch or check the data")


def frozen_guide(lrs, losses, clamp: tuple[float, float], min_descent: float = MIN_DESCENT) -> dict:
    """The frozen stage's guide from its LR-finder curve (smoothed losses, as the Recorder keeps them).

    `{"guide", "rule", "steepest", "min_loss_div_10", "descent", "knee"}`: the steepest slope when the trimmed
    curve falls by at least `min_descent` of its starting loss ("steepest"); otherwise a tenth of the rate where
    the loss shoots up (`find_knee` on the untrimmed end: lr_find stops just after the rise), "knee / 10". A flat
    curve that never shoots up keeps the steepest slope. The guide is clamped to `clamp` either way.
    """
    skip_start, skip_end = finder_skips(len(losses), "frozen")
    steepest, min_div_10 = suggest_lr(lrs, losses, skip_start, skip_end)
    _, trimmed = trim_finder_curve(lrs, losses, skip_start, skip_end)
    trimmed = trimmed[np.isfinite(trimmed)]  # a diverged finder's NaN/inf tail
    start = float(trimmed[0]) if trimmed.size else 0.0
    descent = (start - float(trimmed.min())) / abs(start) if start else 0.0
    knee = find_knee(lrs, losses, skip_start=skip_start, skip_end=0)
    rule, guide = "steepest", steepest
    if descent < min_descent and knee is not None:
        rule, guide = "knee / 10", knee / 10
    lo, hi = clamp
    return {"guide": float(min(max(guide, lo), hi)), "rule": rule, "steepest": steepest,
            "min_loss_div_10": min_div_10, "descent": descent, "knee": knee}


def _learner(task_name: str, task_config: dict, threads: int, seed: int):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    learn = get_task(task_name).learner(task_config)
    learn.recorder.verbose = False
    return learn


def _frozen(task_name: str, task_config: dict, out: str, threads: int, seed: int, clamp: tuple,
            num_it: int = 100) -> dict:
    learn = _learner(task_name, task_config, threads, seed)
    learn.freeze()  # the guide is for a frozen first stage: measured on the head alone, pretrained or not
    trainable = learn.trainable_counts()
    learn.lr_find(num_it=num_it)
    lrs, losses = [float(x) for x in learn.recorder.lrs], [float(x) for x in learn.recorder.losses]
    found = frozen_guide(lrs, losses, clamp)
    path = Path(out) / "lr_find_frozen.png"
    skip_start, skip_end = finder_skips(len(losses), "frozen")
    if found["rule"] == "steepest":
        png = plot_finder(lrs, losses, path, steepest=found["guide"], skip_start=skip_start, skip_end=skip_end)
    else:  # the whole rise, as the unfrozen plot shows it, with the knee and the guide a decade before it
        png = plot_finder(lrs, losses, path, marks={"knee": found["knee"], "guide (flat curve: knee / 10)":
                                                    found["guide"]}, skip_start=skip_start, skip_end=0)
    return {"lrs": lrs, "losses": losses, **found, "png": str(png), "n_groups": len(learn.layer_groups),
            "metric_names": list(learn.metric_names), "trainable_counts": trainable}


def _unfrozen(task_name: str, task_config: dict, out: str, threads: int, seed: int, stage1_lr: float,
              warmup_epochs: int, divisor: float, num_it: int = 100) -> dict:
    learn = _learner(task_name, task_config, threads, seed)
    if warmup_epochs:
        learn.freeze()
        learn.fit_one_cycle(warmup_epochs, slice(stage1_lr))
    learn.unfreeze()
    learn.lr_find(num_it=num_it)
    lrs, losses = [float(x) for x in learn.recorder.lrs], [float(x) for x in learn.recorder.losses]
    # skip_end=0: lr_find stops right after the loss passes 4x its best, so the rise is in the last points
    skip_start = finder_skips(len(losses), "unfrozen")[0]
    sug = suggest_slice(lrs, losses, stage1_lr=stage1_lr, divisor=divisor, skip_start=skip_start, skip_end=0)
    png = plot_finder(lrs, losses, Path(out) / "lr_find_unfrozen.png", slice_suggestion=sug, skip_start=skip_start,
                      skip_end=0)
    return {"lrs": lrs, "losses": losses, **sug.to_dict(), "png": str(png)}


def _result(ref):
    """`ray.get` of a finder's task; a raylessons error raised in it (a ConfigError: too short a curve) comes out
    as itself, its message alone, not inside Ray's wrapper with the task's traceback."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, RaylessonsError):
            raise e.cause from None
        raise


def run_finders(task_name: str, task_config: dict, out: Path, *, cpus: float = 1, gpus: float = 0,
                warmup_epochs: int = 1, divisor: float = 5.0, seed: int = 0,
                clamp: tuple[float, float] = (1e-4, 1e-1), num_it: int = 100) -> dict:
    """Run both finders as Ray tasks (one after the other: the second needs the first's rate); returns both.

    The frozen guide is clamped to `clamp` (a from-scratch curve can be noisy at the ends). If `out`
    already holds `finders.json` for the same task and config (a restored sweep), it is reused.
    """
    import ray

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = {"task": task_name, "task_config": task_config, "warmup_epochs": warmup_epochs, "divisor": divisor,
           "seed": seed, "clamp": list(clamp), "num_it": num_it}
    saved = out / FINDERS_FILE
    if saved.is_file():
        found = json.loads(saved.read_text())
        if found.get("key") == key:
            return found
    threads = max(1, int(cpus))
    opts = {"num_cpus": cpus, "num_gpus": gpus}
    t0 = time.perf_counter()
    frozen = _result(ray.remote(_frozen).options(**opts).remote(task_name, task_config, str(out), threads, seed,
                                                                tuple(clamp), num_it))
    unfrozen = _result(ray.remote(_unfrozen).options(**opts).remote(
        task_name, task_config, str(out), threads, seed, frozen["guide"], warmup_epochs, divisor, num_it))
    found = {"key": key, "frozen": frozen, "unfrozen": unfrozen, "wall_s": time.perf_counter() - t0}
    saved.write_text(json.dumps(found, indent=1))
    return found
