"""`Task`: one lesson recipe as the Ray layers see it (options, data, learner, plans, metric), declared once."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..learner_io import load_weights
from ..plan import Stage, load_plan

__all__ = ["HeldOutTest", "Task"]


@dataclass
class HeldOutTest:
    """The options every task's Config has for a held-out test set (`ItemLists.hold_out`): items that neither
    training nor a sweep's model selection ever sees, picked by a hash of their names."""

    test_pct: float = field(default=0.0, metadata={
        "help": "share of the items held out as a test set: never trained on, never used to select a model"})
    split: str = field(default="train", metadata={
        "help": "train: train and valid without the test items; test: the test items as the validation set, "
                "to evaluate a trained model on", "choices": ("train", "test")})

    def __post_init__(self):
        if not (isinstance(self.test_pct, (int, float)) and 0 <= self.test_pct < 1):
            raise ConfigError(f"test_pct must be a share in [0, 1), e.g. 0.2; got {self.test_pct!r}")
        if self.split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test'; got {self.split!r}")


@dataclass(frozen=True)
class Task:
    """A workflow of the lesson; every `tasks/<name>.py` declares one as `TASK` (collected in `tasks.TASKS`).

    `Config` is the task's options dataclass (its fields are the command line's task flags); `build_source(cfg)`
    the split, labelled items; `build_data(cfg, size=None, src=None, bs=None)` the DataBunch (a stage's new size
    or batch size re-transforms the same source); `build_learner(data, cfg, **kwargs)` the Learner.
    """

    name: str
    Config: type
    build_source: Callable
    build_data: Callable
    build_learner: Callable
    plans: Mapping[str, Callable[[], list[dict]]]  # "lesson" (the notebook's plan), "smoke" (a two-stage check)
    metric: str                                    # what a sweep optimises, as the learner reports it
    mode: str                                      # "max" or "min"
    sync_bn: bool = False                          # multi-GPU workers normalise over the global batch
    sweep: bool = True                             # offered by `raylessons sweep`
    # `raylessons sweep --task <name>`'s search space where the command line says nothing: SweepConfig's
    # schedules, ratios, stage1_fracs, divisor (see sweep/config.py PRESET_FIELDS), from the lesson's plan
    sweep_preset: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # the lesson plan as a sweep trial's config (rates, schedule, first stage's share of the budget): a sweep's
    # first trial (`SweepConfig.lesson_first`), so the search starts from the hand-written recipe
    lesson_trial: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def config(self, options=None):
        """The task's Config from a dict of options (a Config is returned as it is); unknown keys are ConfigErrors."""
        if isinstance(options, self.Config):
            return options
        names = {f.name for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(options or {}) - names)
        if unknown:
            raise ConfigError(f"the {self.name} task has no option {', '.join(map(repr, unknown))}; "
                              f"its options: {', '.join(sorted(names))}")
        return self.Config(**(options or {}))

    def learner(self, options=None, device=None):
        """The task's learner on its data as `options` (a dict or a Config) describe them (one process, no DDP)."""
        cfg = self.config(options)
        return self.build_learner(self.build_data(cfg), cfg, device=device)

    def test_data(self, options=None):
        """The DataBunch whose validation set is the held-out test items (`test_pct` > 0), labelled as in training:
        `learn.validate(test_data.valid_dl)` scores a trained model on data it never saw."""
        cfg = dataclasses.replace(self.config(options), split="test")
        if not cfg.test_pct > 0:
            raise ConfigError(f"the {self.name} task holds out no test set: set test_pct (e.g. 0.2)")
        return self.build_data(cfg)

    def evaluate(self, options, export) -> dict:
        """An export's scores on the held-out test items (`test_data`): {"test_loss": ..., metric: ...}, from a
        learner of this task built on the test split with the export's weights (weights_only loading)."""
        cfg = self.config(options)
        learn = load_weights(self.build_learner(self.test_data(cfg), cfg, device="cpu"), export)
        loss, metrics = learn.validate()
        return {"test_loss": float(loss), **{name: float(v) for name, v in zip(learn.metric_names, metrics)}}

    def test_key(self) -> str:
        """The key of `evaluate`'s answer that holds this task's `metric` (a loss is `test_loss` there)."""
        return "test_loss" if self.metric == "valid_loss" else self.metric

    def first_size_plan(self, epochs: int | None = None) -> list[dict]:
        """The lesson's plan up to its first resize (the stages at one image size), without its saves; with
        `epochs`, each stage's epochs scaled so they add up to it (each stage >= 1): the lesson at a budget."""
        stages = []
        for i, stage in enumerate(self.plans["lesson"]()):
            if i and ("size" in stage or "bs" in stage):
                break
            stages.append({k: v for k, v in stage.items() if k != "save"})
        if epochs is None:
            return stages
        if epochs < len(stages):
            raise ConfigError(f"the {self.name} lesson's {len(stages)} stages need at least {len(stages)} epochs, "
                              f"got {epochs}")
        total = sum(s["epochs"] for s in stages)
        counts = [max(1, round(s["epochs"] * epochs / total)) for s in stages]
        while sum(counts) != epochs:  # rounding: take from (or give to) the longest stage
            i = counts.index(max(counts))
            counts[i] += 1 if sum(counts) < epochs else -1
        return [{**s, "epochs": n} for s, n in zip(stages, counts)]

    def load_plan(self, plan) -> list[Stage]:
        """Stages from a list of stages, a preset name of `plans`, a JSON string or a .json/.yaml file."""
        return load_plan(plan, self.plans)
