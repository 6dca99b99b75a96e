"""Command line of a training run, shared by `jobs/*.py` and `raylessons train`: flags from `TrainRun` and the task."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .. import storage
from ..cluster import init_ray
from ..errors import RaylessonsError
from ..options import add_dataclass_arguments, option_values, peek_option
from ..tasks import TASKS, get_task
from ..tasks.options import add_task_arguments, task_config_from_args
from .train import TrainRun, fit_plan

__all__ = ["add_train_arguments", "job_main", "run_from_args", "train_main"]

RUN_OPTIONS = frozenset(f.name for f in dataclasses.fields(TrainRun))


def add_train_arguments(parser: argparse.ArgumentParser, task: str | None = None, fixed: bool = False) -> None:
    """The options of a training job: `TrainRun`'s fields, the task's options (all of `task`'s; without one, those
    every task has) and `--verbose`. `fixed`: the task is given by the entrypoint (no `--task`)."""
    add_dataclass_arguments(parser, TrainRun, exclude=("task_config", "task") if fixed else ("task_config",))
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's own log lines on the console (default: in <storage>/<name>/ray.log)")
    # a task option named like a run option (seed, num_workers) is reached with --set
    add_task_arguments(parser, get_task(task) if task in TASKS else None, TASKS.values(), exclude=RUN_OPTIONS)


def run_from_args(args: argparse.Namespace, task: str | None = None) -> dict:
    """Build a TrainRun from parsed options, run it on Ray Train, print and return the result."""
    values = {**option_values(TrainRun, args), **({"task": task} if task else {})}
    run = TrainRun(**values, task_config=task_config_from_args(args, get_task(values["task"])))
    if run.num_workers > 0:  # 0: in this process, no Ray
        # Ray's log: beside the run, or for a run in a bucket in its local mirror (storage.local_mirror)
        log_dir = (storage.local_mirror(storage.join(run.storage_path, run.run_name()))
                   if storage.is_uri(run.storage_path) else Path(run.storage_path).expanduser() / run.run_name())
        init_ray(verbose=args.verbose or None, log_dir=log_dir)
    result = fit_plan(run)
    print(json.dumps({"export": result["export"], "metrics": result["metrics"]}, indent=2, default=str))
    return result


def train_main(argv: list[str] | None = None, task: str | None = None, prog: str | None = None,
               description: str | None = None) -> int:
    """Parse the options (the task's own once `--task` is known), run the plan on Ray Train, print the result.

    A RaylessonsError (bad data, plan or config) prints one line and returns 2.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_train_arguments(parser, task or peek_option(argv, "--task"), fixed=task is not None)
    args = parser.parse_args(argv)
    try:
        run_from_args(args, task=task)
    except RaylessonsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def job_main(task: str, argv: list[str] | None = None, description: str | None = None) -> int:
    """The body of every `jobs/<task>.py`: `train_main` with the task fixed."""
    return train_main(argv, task=task, description=description)
