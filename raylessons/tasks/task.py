"""`Task`: one lesson recipe as the Ray layers see it (options, data, learner, plans, metric), declared once."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
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

    def load_plan(self, plan) -> list[Stage]:
        """Stages from a list of stages, a preset name of `plans`, a JSON string or a .json/.yaml file."""
        return load_plan(plan, self.plans)
