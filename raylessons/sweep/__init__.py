"""Ray Tune sweeps guided by the LR finder: learning-rate bands and gradual-unfreezing schedules."""
from .space import SCHEDULES, ULMFIT_RATIO, build_space, check_schedule, plan_from_config, split_epochs

__all__ = ["SCHEDULES", "ULMFIT_RATIO", "build_space", "check_schedule", "plan_from_config", "split_epochs",
           "SweepConfig", "run_sweep"]


def __getattr__(name):  # the Tune driver imports Ray: load it on first use
    if name in ("SweepConfig", "run_sweep"):
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
