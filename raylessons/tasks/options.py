"""A task's options on the command line: a flag per field of its Config, and `--set KEY=VALUE` for any of them."""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable

from ..errors import ConfigError
from ..options import add_dataclass_arguments, option_values, parse_json
from .task import Task

__all__ = ["TASK_PREFIX", "add_task_arguments", "parse_sets", "task_config_from_args"]

TASK_PREFIX = "task."  # where the task's options land in the parsed namespace (apart from the run's own)


def add_task_arguments(parser: argparse.ArgumentParser, task: Task | None = None, tasks: Iterable[Task] = (),
                       exclude: Iterable[str] = ()) -> None:
    """A flag for every option of `task` (without one: the options every task of `tasks` has), and `--set`.

    `exclude` names options left to `--set` because the run has a flag of the same name (e.g. `seed`).
    """
    if task is not None:
        config, only, title = task.Config, None, f"options of the {task.name} task"
    else:
        tasks = list(tasks)
        config = tasks[0].Config
        only = set.intersection(*({f.name for f in dataclasses.fields(t.Config)} for t in tasks))
        title = "task options (those of every task; --task T --help lists all of T's)"
    group = parser.add_argument_group(title)
    add_dataclass_arguments(group, config, exclude=exclude, only=only, prefix=TASK_PREFIX)
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any task option (VALUE parsed as JSON when it can be), e.g. --set drop_mult=0.5")


def task_config_from_args(args: argparse.Namespace, task: Task) -> dict:
    """The task options the command line gave (its flags and `--set`), as a dict; unknown keys are ConfigErrors."""
    return {**option_values(task.Config, args, TASK_PREFIX), **parse_sets(getattr(args, "set", []), task)}


def parse_sets(items: list[str], task: Task) -> dict:
    """{key: value} of --set KEY=VALUE options, checked against the task's Config fields."""
    fields = {f.name for f in dataclasses.fields(task.Config)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        out[key] = parse_json(value)
    return out
