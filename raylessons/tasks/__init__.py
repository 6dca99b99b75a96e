"""The lesson's recipes, one `Task` each (`tasks/<name>.py` declares `TASK`), in one registry."""
from __future__ import annotations

from ..errors import ConfigError
from . import camvid, head_pose, imdb_clas, imdb_lm, planet
from .task import Task

__all__ = ["TASKS", "Task", "get_task"]

TASKS: dict[str, Task] = {m.TASK.name: m.TASK for m in (planet, camvid, head_pose, imdb_lm, imdb_clas)}


def get_task(name: str) -> Task:
    """The task `name`; an unknown name is a ConfigError listing the known ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
