"""`SweepConfig`: everything a sweep needs, as plain data (its fields are `raylessons sweep`'s options), and its
checks, all made before Ray starts."""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..tasks import TASKS, get_task
from .space import build_space, plan_from_config, schedule_groups, split_epochs

__all__ = ["PRESET_FIELDS", "SCHEDULERS", "SEARCHERS", "SWEEP_TASKS", "SweepConfig", "check_sweep", "experiment_name"]

SCHEDULERS = ("asha", "fifo")
# Tune's random sampling of the space; Optuna's TPE; or Optuna's scrambled Sobol sequence, which spreads a few draws
# evenly over every dimension of the space (pip install 'raylessons[optuna]')
SEARCHERS = ("random", "optuna", "qmc")
OPTUNA_SEARCHERS = ("optuna", "qmc")
MIN_FINDER_ITERS = 20  # suggest_lr trims 10 + 5 points of the finder's curve and needs a few left
SWEEP_TASKS = tuple(name for name, task in TASKS.items() if task.sweep)
# the search space's fields a task's `sweep_preset` fills where the caller gave None; then these defaults
PRESET_FIELDS = {"schedules": ["two_stage"], "ratios": [10.0, 100.0], "stage1_fracs": [0.25, 0.5], "divisor": 5.0,
                 "pct_start": None, "moms": None}


def _number(text: str) -> float:
    """'0.5', '1e-3' or a power such as '2.6**4' (fastai's ULMFiT ratio)."""
    base, sep, power = text.strip().partition("**")
    return float(base) ** float(power) if sep else float(base)


def parse_floats(value: str) -> list[float]:
    """'10,2.6**4' -> [10.0, 45.6976]."""
    try:
        return [_number(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (2.6**4 allowed), got {value!r}") from None


def parse_schedules(value: str) -> list:
    """'two_stage,gradual' or a JSON list of schedules, e.g. '[[-1, "all"], "all"]'."""
    value = value.strip()
    if value.startswith("["):
        return json.loads(value)
    return [v.strip() for v in value.split(",") if v.strip()]


FLOATS = {"parse": parse_floats, "metavar": "X,Y"}  # the metadata of a list of numbers on the command line


@dataclass
class SweepConfig:
    """Everything a sweep needs, as plain data (its hash names the experiment)."""

    task: str = field(metadata={"help": "the workflow", "choices": SWEEP_TASKS})
    task_config: dict = field(default_factory=dict, metadata={"help": "the task's options (its Config's fields)"})
    trials: int = field(default=8, metadata={"help": "trials to run"})
    max_concurrent: int = field(default=2, metadata={"help": "trials running at once"})
    scheduler: str = field(default="asha", metadata={"help": "asha stops weak trials early; fifo runs all",
                                                     "choices": SCHEDULERS})
    search: str = field(default="random", metadata={
        "help": "how trials are drawn: random (Tune's sampling), optuna (Optuna's TPE learns from finished "
                "trials) or qmc (a scrambled Sobol sequence: a few draws cover every rate band and choice evenly); "
                "optuna and qmc: pip install 'raylessons[optuna]'", "choices": SEARCHERS})
    epochs: int = field(default=4, metadata={"help": "epoch budget of every trial (ASHA's max_t)"})
    grace_period: int | None = field(default=None, metadata={
        "help": "ASHA: epochs before the first cut", "default_text": "once every plan is past the middle of its last "
                "stage: a one-cycle stage scores poorly while its rate is high, so trials are compared as they anneal"})
    reduction_factor: int = field(default=2, metadata={"help": "ASHA: keep the top 1/reduction_factor at each rung"})
    metric: str | None = field(default=None, metadata={"help": "what trials are ranked by",
                                                       "default_text": "the task's metric"})
    mode: str | None = field(default=None, metadata={"help": "min or max", "choices": ("min", "max"),
                                                     "default_text": "the task's mode"})
    schedules: list | None = field(default=None, metadata={
        "help": "unfreezing schedules to search: two_stage, gradual, all, head or JSON lists",
        "parse": parse_schedules, "default_text": "the task's preset"})
    ratios: list | None = field(default=None, metadata={
        "help": "upper/lower ratios, e.g. 10,2.6**4", **FLOATS, "default_text": "the task's preset"})
    band: float = field(default=3.0, metadata={"help": "search [guide/band, guide*band] around each guide"})
    stage1_fracs: list | None = field(default=None, metadata={
        "help": "shares of the epoch budget the first stage gets", **FLOATS, "default_text": "the task's preset"})
    pct_start: list | None = field(default=None, metadata={"help": "pct_start values to search", **FLOATS,
                                                            "default_text": "the task's preset (none: 0.3)"})
    moms: list | None = field(default=None, metadata={"help": "(max, min) momentum pairs to search, as JSON",
                                                      "default_text": "the task's preset (none: (0.95, 0.85))"})
    wd: list | None = field(default=None, metadata={"help": "LOW,HIGH: search wd log-uniformly", **FLOATS})
    divisor: float | None = field(default=None, metadata={"help": "unfrozen upper = stage-1 rate / divisor",
                                                          "default_text": "the task's preset"})
    warmup_epochs: int = field(default=1, metadata={"help": "frozen epochs before the unfrozen finder"})
    finder_iters: int = field(default=100, metadata={"help": "batches of each LR finder run (lr_find's num_it)"})
    guide_clamp: list = field(default_factory=lambda: [1e-4, 1e-1], metadata={
        "help": "LOW,HIGH: the frozen finder's guide is kept in this range", **FLOATS})
    workers_per_trial: int = field(default=1, metadata={"help": "> 1: each trial runs DDP on Ray Train"})
    cpus_per_trial: float | None = field(default=None, metadata={
        "help": "CPUs of a trial, per worker if DDP", "default_text": "the cluster's CPUs / max_concurrent"})
    gpus_per_trial: float = field(default=0, metadata={
        "help": "GPUs per worker; fractions only for single-worker trials"})
    lesson_first: bool = field(default=True, metadata={
        "help": "the first trial is the lesson's own plan at this budget (the task's lesson_trial), and the rate "
                "bands stretch to cover the lesson's rates: the search starts from the hand-written recipe"})
    configs: list | None = field(default=None, metadata={
        "help": "explicit trial configs, as JSON, evaluated first (e.g. a benchmark's fixed plans)"})
    max_failures: int = field(default=0, metadata={
        "help": "retries of a trial that fails (a lost node, a killed worker), each from the trial's last checkpoint"})
    storage_path: str = field(default="~/raylessons_results", metadata={
        "help": "where sweeps are stored: a local path or a URI (s3://bucket/prefix, gs://...)", "flag": "--storage"})
    name: str | None = field(default=None, metadata={
        "help": "experiment name", "default_text": "sweep-<task>-<hash of the options>: a rerun restores it"})
    seed: int = field(default=0, metadata={"help": "seed of the search and of every trial"})
    verbose: int = field(default=1, metadata={"help": "Tune's progress output: 0 silent, 1 status tables, 2 every "
                                                      "result"})

    def __post_init__(self):
        """Fill the search space's unset fields from the task's `sweep_preset`, then `PRESET_FIELDS`."""
        preset = TASKS[self.task].sweep_preset if self.task in TASKS else {}
        for name, default in PRESET_FIELDS.items():
            if getattr(self, name) is None:
                setattr(self, name, copy.deepcopy(preset.get(name, default)))
        if self.grace_period is None and isinstance(self.epochs, int) and self.epochs > 0:
            self.grace_period = default_grace_period(self)


def default_grace_period(cfg: SweepConfig) -> int:
    """ASHA's first cut: the first epoch at which every plan the sweep can run (each schedule of the space at each
    first-stage share, the lesson's plan, explicit configs) is in its last stage and past that stage's middle; at
    most the budget. A one-cycle stage scores poorly while its rate is high, so trials compared earlier are
    compared mid-cycle, and the plans that win a full run often look worst there (`bench/sweep_vs_lesson.py`: a
    cut at epoch 3 of 6 stopped Planet's eventual winner one epoch into its unfrozen stage, at its peak rate)."""
    plans = [{"schedule": s, "stage1_frac": f} for s in cfg.schedules or [] for f in cfg.stage1_fracs or [None]]
    if cfg.lesson_first and cfg.task in TASKS and TASKS[cfg.task].lesson_trial:
        plans.append(dict(TASKS[cfg.task].lesson_trial))
    plans += [p for p in cfg.configs or [] if isinstance(p, dict)]
    marks = []
    for point in plans:
        try:
            epochs = split_epochs(len(schedule_groups(point.get("schedule", "two_stage"))), cfg.epochs,
                                  point.get("stage1_frac"))
        except (ConfigError, TypeError, ValueError):
            continue  # check_sweep reports a bad schedule, share or budget
        marks.append(sum(epochs[:-1]) + math.ceil(epochs[-1] / 2))
    return max(1, min(cfg.epochs, max(marks))) if marks else 1


def experiment_name(cfg: SweepConfig) -> str:
    """`sweep-<task>-<hash>`: the same options give the same name, so a rerun restores the experiment."""
    data = dataclasses.asdict(cfg)
    # how a sweep survives failures does not change what it searches: a rerun with more retries restores it
    data.pop("name"), data.pop("storage_path"), data.pop("verbose"), data.pop("max_failures")
    digest = hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"sweep-{cfg.task}-{digest}"


def _check_optuna(cfg: SweepConfig) -> None:
    """Optuna (and for qmc, SciPy's Sobol sequence) is installed and every choice of the space is a plain value
    (Optuna's categorical choices must be)."""
    try:
        import optuna  # noqa: F401
        if cfg.search == "qmc":
            import scipy.stats.qmc  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"search={cfg.search!r} needs the {(e.name or 'optuna').split('.')[0]} package: "
                          "pip install 'raylessons[optuna]'") from None
    for name in ("schedules", "moms"):
        values = getattr(cfg, name) or []
        if len(values) > 1 and any(isinstance(v, (list, tuple)) for v in values):
            raise ConfigError(f"search={cfg.search!r} takes named {name} only (Optuna's choices are plain values), "
                              f"got {getattr(cfg, name)}; use search='random' for lists")


def check_sweep(cfg: SweepConfig) -> tuple[str, str]:
    """(metric, mode) of `cfg` once every option is checked; a bad one is a ConfigError (before Ray starts)."""
    task = get_task(cfg.task)
    if cfg.scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {cfg.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if cfg.search not in SEARCHERS:
        raise ConfigError(f"unknown search {cfg.search!r}; choose one of {', '.join(SEARCHERS)}")
    if cfg.search in OPTUNA_SEARCHERS:
        _check_optuna(cfg)
    for name in ("trials", "max_concurrent", "epochs", "grace_period", "workers_per_trial", "finder_iters"):
        if int(getattr(cfg, name)) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.finder_iters < MIN_FINDER_ITERS:
        raise ConfigError(f"finder_iters must be >= {MIN_FINDER_ITERS}: a suggestion drops the finder curve's first 10 "
                          f"and last 5 points, got {cfg.finder_iters}")
    if len(cfg.guide_clamp) != 2 or not 0 < cfg.guide_clamp[0] < cfg.guide_clamp[1]:
        raise ConfigError(f"guide_clamp must be [low, high] with 0 < low < high, got {cfg.guide_clamp}")
    if int(cfg.max_failures) < 0:
        raise ConfigError(f"max_failures must be >= 0, got {cfg.max_failures}")
    if cfg.reduction_factor < 2:
        raise ConfigError(f"reduction_factor must be >= 2, got {cfg.reduction_factor}")
    if cfg.gpus_per_trial < 0 or (cfg.workers_per_trial > 1 and cfg.gpus_per_trial not in (0, 1)):
        raise ConfigError(f"gpus_per_trial={cfg.gpus_per_trial}: DDP trials ({cfg.workers_per_trial} workers) "
                          "take whole GPUs (0 or 1 per worker); fractions are for single-worker trials")
    mode = cfg.mode or task.mode
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
    if cfg.configs is not None and not cfg.configs:
        raise ConfigError("configs is an empty list: the search space is empty")
    build_space(1e-2, 1e-3, band=cfg.band, ratios=cfg.ratios, schedules=cfg.schedules,
                stage1_fracs=cfg.stage1_fracs, pct_start=cfg.pct_start, moms=cfg.moms, wd=cfg.wd)
    for sched in cfg.schedules:
        plan_from_config({"schedule": sched, "stage1_lr": 1e-2, "upper": 1e-3}, cfg.epochs)  # budget fits
    lesson = [dict(task.lesson_trial)] if cfg.lesson_first and task.lesson_trial else []
    for point in cfg.configs or []:
        missing = {"stage1_lr", "upper"} - set(point)
        if missing:
            raise ConfigError(f"trial config {point} lacks {sorted(missing)}")
        plan_from_config(point, cfg.epochs)
    for point in lesson:
        try:
            plan_from_config(point, cfg.epochs)
        except ConfigError as e:
            raise ConfigError(f"the {cfg.task} lesson's plan ({point['schedule']}) does not fit: {e}; raise epochs or "
                              "set lesson_first=False (--no-lesson-first)") from None
    if task.config(cfg.task_config).split != "train":  # (unknown task options fail here too)
        raise ConfigError("a sweep selects its best trial on the validation set: split=test would select it on "
                          "the held-out test set; leave split at 'train' (test_pct holds the test set out)")
    return cfg.metric or task.metric, mode
