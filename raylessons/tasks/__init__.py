"""The lesson's recipes: data + learner + default plan for each workflow."""
from __future__ import annotations

import importlib

__all__ = ["TASKS", "get_task", "build_task_learner"]

TASKS = ("planet", "camvid", "head_pose", "imdb_lm", "imdb_clas")


def get_task(name: str):
    """The task module `name` (build_data, build_learner, default_plan, METRIC, MODE, Config)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return importlib.import_module(f"raylessons.tasks.{name}")


def build_task_learner(name: str, task_config: dict, device=None):
    """Task `name`'s learner on its data as `task_config` describes them (one process, no DDP)."""
    task = get_task(name)
    cfg = task.Config(**task_config)
    return task.build_learner(task.build_data(cfg), cfg, device=device)
