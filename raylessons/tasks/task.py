"""`Task`: one lesson recipe as the Ray layers see it (options, data, learner, plans, metric), declared once."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..plan import Stage, load_plan

__all__ = ["Task"]


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

    def load_plan(self, plan) -> list[Stage]:
        """Stages from a list of stages, a preset name of `plans`, a JSON string or a .json/.yaml file."""
        return load_plan(plan, self.plans)
