"""The lesson's recipes: data + learner + default plan for each workflow."""
from __future__ import annotations

import importlib

__all__ = ["TASKS", "get_task"]

TASKS = ("planet", "camvid", "head_pose", "imdb_lm", "imdb_clas")


def get_task(name: str):
    """The task module `name` (build_data, build_learner, default_plan, METRIC, MODE, Config)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return importlib.import_module(f"raylessons.tasks.{name}")
