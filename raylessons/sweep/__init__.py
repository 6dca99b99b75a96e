"""Ray Tune sweeps guided by the LR finder: learning-rate bands and gradual-unfreezing schedules."""
from .config import SweepConfig, check_sweep, experiment_name
from .run import run_sweep
from .space import SCHEDULES, ULMFIT_RATIO, build_space, check_schedule, plan_from_config, split_epochs

__all__ = ["SCHEDULES", "ULMFIT_RATIO", "SweepConfig", "build_space", "check_schedule", "check_sweep",
           "experiment_name", "plan_from_config", "run_sweep", "split_epochs"]
