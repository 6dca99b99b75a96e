"""Command line of a sweep, shared by `jobs/sweep.py` and `raylessons sweep`."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..distributed.launch import add_task_arguments, task_config_from_args
from ..tasks import TASKS

__all__ = ["add_sweep_arguments", "config_from_args", "sweep_main"]


def _number(text: str) -> float:
    """'0.5', '1e-3' or a power such as '2.6**4' (fastai's ULMFiT ratio)."""
    base, sep, power = text.strip().partition("**")
    return float(base) ** float(power) if sep else float(base)


def _floats(value: str) -> list[float]:
    try:
        return [_number(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (2.6**4 allowed), got {value!r}") from None


def _schedules(value: str) -> list:
    """'two_stage,gradual' or a JSON list of schedules, e.g. '[[-1, "all"], "all"]'."""
    value = value.strip()
    if value.startswith("["):
        return json.loads(value)
    return [v.strip() for v in value.split(",") if v.strip()]


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `raylessons sweep` / `jobs/sweep.py`."""
    parser.add_argument("--task", choices=[t for t in TASKS if t != "imdb_lm"], required=True)
    add_task_arguments(parser)  # --data, --size, --bs, --arch, --pretrained, --set
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default="asha")
    parser.add_argument("--epochs", type=int, default=4, help="epoch budget of every trial (ASHA's max_t)")
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=int, default=2)
    parser.add_argument("--metric", default=None, help="default: the task's metric")
    parser.add_argument("--mode", choices=["min", "max"], default=None)
    parser.add_argument("--schedules", type=_schedules, default=["two_stage"],
                        help="unfreezing schedules to search: two_stage, gradual, all, head or JSON lists")
    parser.add_argument("--ratios", type=_floats, default=[10.0, 100.0], help="upper/lower ratios, e.g. 10,2.6**4")
    parser.add_argument("--band", type=float, default=3.0, help="search [guide/band, guide*band] around each guide")
    parser.add_argument("--stage1-fracs", type=_floats, default=[0.25, 0.5])
    parser.add_argument("--pct-start", type=_floats, default=None)
    parser.add_argument("--wd", type=_floats, default=None, help="LOW,HIGH: search wd log-uniformly")
    parser.add_argument("--divisor", type=float, default=5.0, help="unfrozen upper = stage-1 rate / divisor")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="frozen epochs before the unfrozen finder")
    parser.add_argument("--finder-iters", type=int, default=100, help="batches of each LR finder run")
    parser.add_argument("--guide-clamp", type=_floats, default=[1e-4, 1e-1],
                        help="LOW,HIGH: the frozen finder's guide is kept in this range")
    parser.add_argument("--workers-per-trial", type=int, default=1, help="> 1: each trial runs DDP on Ray Train")
    parser.add_argument("--cpus-per-trial", type=float, default=None)
    parser.add_argument("--gpus-per-trial", type=float, default=0)
    parser.add_argument("--storage", default="~/raylessons_results")
    parser.add_argument("--name", default=None, help="default: derived from the options (a rerun restores it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true",
                        help="Tune's status tables and Ray's log lines on the console (default: <storage>/ray.log)")


def config_from_args(args: argparse.Namespace):
    from .run import SweepConfig

    return SweepConfig(task=args.task, task_config=task_config_from_args(args, args.task), trials=args.trials,
                       max_concurrent=args.max_concurrent, scheduler=args.scheduler, epochs=args.epochs,
                       grace_period=args.grace_period, reduction_factor=args.reduction_factor, metric=args.metric,
                       mode=args.mode, schedules=args.schedules, ratios=args.ratios, band=args.band,
                       stage1_fracs=args.stage1_fracs, pct_start=args.pct_start, wd=args.wd, divisor=args.divisor,
                       warmup_epochs=args.warmup_epochs, finder_iters=args.finder_iters,
                       guide_clamp=args.guide_clamp,
                       workers_per_trial=args.workers_per_trial,
                       cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                       storage_path=args.storage, name=args.name, seed=args.seed,
                       verbose=1 if getattr(args, "verbose", False) else 0)


def sweep_main(argv: list[str] | None = None) -> int:
    """Parse, run (or restore) the sweep, print its table; a RaylessonsError prints one line and returns 2."""
    from ..errors import RaylessonsError
    from .run import run_sweep

    parser = argparse.ArgumentParser(prog="raylessons sweep", description=__doc__)
    add_sweep_arguments(parser)
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
    return 0
