"""Command line of a sweep, shared by `jobs/sweep.py` and `raylessons sweep`: flags from `SweepConfig` and the task."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from ..errors import RaylessonsError
from ..options import add_dataclass_arguments, option_values, peek_option
from ..tasks import TASKS, get_task
from ..tasks.options import add_task_arguments, task_config_from_args
from .config import SWEEP_TASKS, SweepConfig
from .run import run_sweep

__all__ = ["add_sweep_arguments", "config_from_args", "sweep_main"]

SWEEP_OPTIONS = frozenset(f.name for f in dataclasses.fields(SweepConfig))


def add_sweep_arguments(parser: argparse.ArgumentParser, task: str | None = None) -> None:
    """The options of `raylessons sweep` / `jobs/sweep.py`: `SweepConfig`'s fields, the task's options (all of
    `task`'s; without one, those every sweepable task has) and `--verbose`."""
    add_dataclass_arguments(parser, SweepConfig, exclude=("task_config", "verbose"))
    parser.add_argument("--verbose", action="store_true",
                        help="Tune's status tables and Ray's log lines on the console (default: <storage>/ray.log)")
    # a task option named like a sweep option (seed) is reached with --set
    add_task_arguments(parser, get_task(task) if task in SWEEP_TASKS else None,
                       [TASKS[name] for name in SWEEP_TASKS], exclude=SWEEP_OPTIONS)


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """The SweepConfig of parsed options (the task's options checked against its Config)."""
    values = option_values(SweepConfig, args)
    return SweepConfig(**values, task_config=task_config_from_args(args, get_task(values["task"])),
                       verbose=1 if args.verbose else 0)


def sweep_main(argv: list[str] | None = None) -> int:
    """Parse, run (or restore) the sweep, print its table; a RaylessonsError prints one line and returns 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="raylessons sweep", description=__doc__)
    add_sweep_arguments(parser, peek_option(argv, "--task"))
    args = parser.parse_args(argv)
    try:
        if args.verbose:  # Ray's own console output back (read by init_ray)
            os.environ["RAYLESSONS_VERBOSE"] = "1"
        result = run_sweep(config_from_args(args))
    except RaylessonsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(open(result["table_md"]).read())
    print(json.dumps({k: result[k] for k in ("path", "table_csv", "plot", "finders")} |
                     {"best_export": result["best"]["export"], "best": result["best"][result["metric"]]},
                     indent=2, default=str))
    print(f"every trial's curves (Tune's TensorBoard logger): tensorboard --logdir {result['path']}")
    return 0
