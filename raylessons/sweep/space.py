"""Search spaces built from the LR finders' suggestions, and unfreezing schedules turned into plans.

A trial's config is plain data; `plan_from_config` turns it into a plan (the list of stages that
`raylessons.plan` runs and that is written with the trial's result):

- `stage1_lr`: the frozen stage's rate (`slice(stage1_lr)`), searched log-uniformly in
  [frozen / band, frozen * band] around the frozen finder's guide (`finder.frozen_guide`: its steepest slope, or
  on a flat curve a decade before the loss shoots up);
- `upper`: the unfrozen stages' top rate, log-uniform in [upper / band, upper * band] around the unfrozen
  guide (`suggest_slice`: stage-1 rate / divisor);
- with the lesson's rates (the task's `lesson_trial`), each band stretches to cover the lesson's rate as well:
  a finder's guide on a short curve or a model trained from scratch can be a decade off (head pose's frozen
  finder suggests 1e-4 where the lesson's 2e-2 trains well), and the lesson's rate is the prior knowledge;
- `ratio` (upper / lower) is searched among `ratios`
  (fastai's 2.6**4 for the text classifier), so the last stage runs `slice(upper / ratio, upper)`;
- `schedule`: a gradual-unfreezing schedule (a name of `SCHEDULES` or a list of groups), and
  `stage1_frac`: the share of the epoch budget that the first stage gets when the schedule has 2 stages;
- optional `pct_start`, `moms`, `wd` for every stage.

A schedule lists what each stage trains: -1 is `freeze_to(-1)` (the head), -k is `freeze_to(-k)` (the last k
groups), "all" is `unfreeze()`. Stages between the first and the last (ULMFiT's -2, -3) get top rates
spaced evenly on a log scale from `stage1_lr` down to `upper`, each with the same `ratio`.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import ConfigError

__all__ = ["SCHEDULES", "ULMFIT_RATIO", "build_space", "plan_from_config", "check_schedule", "schedule_groups",
           "split_epochs"]

ULMFIT_RATIO = 2.6 ** 4  # fastai's discriminative ratio for the AWD-LSTM classifier: slice(lr / 2.6**4, lr)

SCHEDULES: dict[str, list] = {
    "two_stage": [-1, "all"],        # the lesson's vision recipe: the head, then everything
    "gradual": [-1, -2, -3, "all"],  # ULMFiT: one more group per stage
    "all": ["all"],                  # everything at once
    "head": [-1],                    # the head only
}


def schedule_groups(schedule) -> list:
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {schedule!r}; known: {sorted(SCHEDULES)} or a list like [-1, 'all']")
        return list(SCHEDULES[schedule])
    groups = list(schedule)
    if not groups:
        raise ConfigError("a schedule needs at least one stage, e.g. [-1, 'all']")
    return groups


def check_schedule(schedule, n_groups: int, model: str = "the model") -> list:
    """The schedule's groups, checked against a model with `n_groups` layer groups (a clear error otherwise)."""
    groups = schedule_groups(schedule)
    for g in groups:
        if g == "all":
            continue
        if isinstance(g, bool) or not isinstance(g, int) or g >= 0:
            raise ConfigError(f"schedule {schedule!r}: {g!r} is not a layer group; use -1 (the head), -k or 'all'")
        if -g > n_groups:
            raise ConfigError(f"schedule {schedule!r} names layer group {g}, but {model} has {n_groups} layer "
                              f"groups (valid: -1 .. -{n_groups} or 'all')")
    return groups


def split_epochs(n_stages: int, total: int, stage1_frac: float | None = None) -> list[int]:
    """Epochs per stage within `total`: the first stage gets round(total * stage1_frac) (>= 1), the rest share."""
    if total < n_stages:
        raise ConfigError(f"an epoch budget of {total} cannot give each of the {n_stages} stages an epoch")
    if n_stages == 1:
        return [total]
    if stage1_frac is None:
        base = [total // n_stages] * n_stages
        for i in range(total - sum(base)):
            base[-1 - i] += 1  # later (unfrozen) stages get the remainder
        return base
    first = min(max(1, round(total * stage1_frac)), total - (n_stages - 1))
    return [first] + split_epochs(n_stages - 1, total - first)


def plan_from_config(config: dict, total_epochs: int, n_groups: int | None = None) -> list[dict]:
    """The plan (list of stage dicts) a trial's config stands for; see the module docstring."""
    groups = schedule_groups(config.get("schedule", "two_stage")) if n_groups is None else \
        check_schedule(config.get("schedule", "two_stage"), n_groups)
    epochs = split_epochs(len(groups), int(total_epochs), config.get("stage1_frac"))
    stage1_lr, upper = float(config["stage1_lr"]), float(config["upper"])
    ratio = float(config.get("ratio", 10.0))
    middle = len(groups) - 2 if groups[0] == -1 and len(groups) > 2 else 0
    # top rates of the middle stages: log-spaced strictly between stage1_lr and upper
    tops = [stage1_lr * (upper / stage1_lr) ** ((i + 1) / (middle + 1)) for i in range(middle)]
    extra = {k: config[k] for k in ("pct_start", "moms", "wd") if config.get(k) is not None}
    if "moms" in extra:
        extra["moms"] = list(extra["moms"])
    plan = []
    for i, (g, n) in enumerate(zip(groups, epochs)):
        if g == -1:
            stage = {"freeze": True, "max_lr": f"slice({stage1_lr:.6g})"}
        else:
            top = upper if (g == "all" or i == len(groups) - 1) else tops.pop(0)
            stage = {"unfreeze": True} if g == "all" else {"freeze_to": g}
            stage["max_lr"] = f"slice({top / ratio:.6g}, {top:.6g})"
        plan.append({**stage, "epochs": n, **extra})
    return plan


def _band(center: float, band: float, name: str, also: float | None = None):
    """Log-uniform over [center / band, center * band], stretched to [also / band, ...] or [..., also * band]
    so that it covers `also` (the lesson's rate) the same way."""
    from ray import tune

    for rate, what in ((center, "guide"), (also, "lesson rate")):
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ConfigError(f"the {name} {what} must be a positive learning rate, got {rate!r}")
    lo, hi = (center, center) if also is None else (min(center, also), max(center, also))
    return tune.loguniform(lo / band, hi * band)


def _choice(values, name: str):
    from ray import tune

    values = list(values)
    if not values:
        raise ConfigError(f"the search space is empty: no {name} to choose from")
    return tune.choice(values) if len(values) > 1 else values[0]


def build_space(frozen_lr: float, upper: float, *, band: float = 3.0, ratios: Sequence[float] = (10.0, 100.0),
                schedules: Sequence = ("two_stage",), stage1_fracs: Sequence[float] = (0.25, 0.5),
                pct_start: Sequence[float] | None = None, moms: Sequence[Sequence[float]] | None = None,
                wd: tuple[float, float] | None = None, lesson: dict | None = None) -> dict:
    """A Tune param_space around the finders' guides: rates log-uniform in [guide / band, guide * band]; with
    `lesson` (a trial config with the lesson's stage1_lr and upper), each band stretches to cover the lesson's
    rate too: the search spans what the finder suggests and what the lesson used."""
    schedules = [schedules] if isinstance(schedules, str) else list(schedules)
    if not band > 1:
        raise ConfigError(f"band must be > 1 (the search range is [guide / band, guide * band]); got {band}: "
                          "the search space would be empty")
    if any(not r >= 1 for r in ratios):
        raise ConfigError(f"every ratio (upper / lower) must be >= 1, got {list(ratios)}")
    lesson = lesson or {}
    # the unfrozen slice's two numbers first: search='qmc' (a Sobol sequence) balances its first two dimensions
    # jointly, so 4 draws put each ratio with a high and with a low top rate, where a good slice needs both right
    space = {"upper": _band(upper, band, "unfrozen", lesson.get("upper")), "ratio": _choice(ratios, "ratio"),
             "stage1_lr": _band(frozen_lr, band, "frozen (stage-1)", lesson.get("stage1_lr")),
             "schedule": _choice(schedules, "schedule"), "stage1_frac": _choice(stage1_fracs, "stage1_frac")}
    for s in schedules:
        schedule_groups(s)
    if pct_start is not None:
        space["pct_start"] = _choice(pct_start, "pct_start")
    if moms is not None:
        space["moms"] = _choice([list(m) for m in moms], "moms")
    if wd is not None:
        lo, hi = wd
        if not 0 < lo < hi:
            raise ConfigError(f"wd must be a range (low, high) with 0 < low < high, got {wd}")
        from ray import tune

        space["wd"] = tune.loguniform(lo, hi)
    return space
