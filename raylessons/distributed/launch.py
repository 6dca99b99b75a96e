"""Command-line front of a training run, shared by `jobs/*.py` and `raylessons train`."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from ..tasks import TASKS, get_task

__all__ = ["job_main", "add_train_arguments", "add_task_arguments", "task_config_from_args", "parse_size", "parse_sets", "load_plan", "run_from_args", "init_ray", "ray_verbose", "quiet_ray_logging", "redirect_output", "LOCAL_SYSTEM_CONFIG"]


def load_plan(value: str, task: str) -> list:
    """A plan from a preset name ('lesson', 'smoke'), a JSON string, or a .json/.yaml file."""
    mod = get_task(task)
    presets = {"lesson": mod.default_plan, "smoke": mod.smoke_plan}
    if value in presets:
        return presets[value]()
    path = Path(value)
    if path.suffix in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"plan file not found: {path}")
        text = path.read_text()
        if path.suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    try:
        plan = json.loads(value)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--plan is neither a preset ({', '.join(presets)}), a plan file, nor JSON: {e}") from None
    return plan["stages"] if isinstance(plan, dict) and "stages" in plan else plan


def parse_size(value: str) -> int | list[int]:
    """'128' -> 128; '360,480' or '360x480' -> [360, 480] (height, width)."""
    parts = value.lower().replace("x", ",").split(",")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or H,W with positive integers, got {value!r}") from None
    if len(sizes) not in (1, 2) or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"size must be N or H,W with positive integers, got {value!r}")
    return sizes[0] if len(sizes) == 1 else sizes


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that build a task's data and model: data root, size, bs, arch, pretrained, --set."""
    parser.add_argument("--data", required=True, help="dataset root (the real layout or a generated look-alike)")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="image size of the first stage: 128 (square) or 360,480 (height,width)")
    parser.add_argument("--bs", type=int, default=None)
    parser.add_argument("--arch", default=None, help="resnet18 | resnet34 | resnet50")
    parser.add_argument("--pretrained", default="false",
                        help="true (torchvision ImageNet weights), false, or a local weights file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any task option (VALUE parsed as JSON when it can be), e.g. --set drop_mult=0.5")


def task_config_from_args(args: argparse.Namespace, task: str) -> dict:
    """The task_config dict of `add_task_arguments`' options (unknown --set keys are ConfigErrors)."""
    task_config = {"data": args.data}
    for key in ("size", "bs", "arch"):
        if getattr(args, key) is not None:
            task_config[key] = getattr(args, key)
    task_config["pretrained"] = {"true": True, "false": False}.get(str(args.pretrained).lower(), args.pretrained)
    task_config.update(parse_sets(args.set, task))
    return task_config


def add_train_arguments(parser: argparse.ArgumentParser, task: str | None = None) -> None:
    """The options of a training job: the task's options, plan, workers, storage, run name."""
    if task is None:
        parser.add_argument("--task", choices=TASKS, required=True)
    add_task_arguments(parser)
    parser.add_argument("--plan", default="lesson", help="'lesson', 'smoke', a JSON list of stages or a file")
    parser.add_argument("--num-workers", type=int, default=1,
                        help="Ray Train workers (0: run in this process without Ray, e.g. to debug)")
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--cpus-per-worker", type=float, default=None)
    parser.add_argument("--name", default=None, help="run name; the same name resumes from its last checkpoint")
    parser.add_argument("--storage", default="~/raylessons_results")
    parser.add_argument("--max-failures", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's own log lines on the console (default: in <storage>/<name>/ray.log)")


def parse_sets(items: list[str], task: str) -> dict:
    """{key: value} of --set KEY=VALUE options, checked against the task's Config fields."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(get_task(task).Config)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# A private local instance on a small machine: no idle pre-started workers and no metrics agent
# loop. Measured here: idle Ray falls from 9.5 % to 5.6 % of one core, which training gets back.
LOCAL_SYSTEM_CONFIG = {"enable_worker_prestart": False, "prestart_worker_first_driver": False,
                       "enable_metrics_collection": False}


def init_ray(verbose: bool | None = None, log_dir: str | Path | None = None, dashboard: bool = True,
             **kwargs) -> bool:
    """Attach to the cluster a job runs in (RAY_ADDRESS), else start a private local instance.

    Quiet by default: workers' and actors' output (Ray Train's report lines, Serve's controller INFO, log
    deduplication notes) stays in Ray's session logs instead of being echoed on this console, and the driver's
    own Ray loggers write WARNING and up to `log_dir/ray.log` (when given) instead of the terminal.
    `verbose=True` (or RAYLESSONS_VERBOSE=1) brings Ray's console output back. `dashboard=False` leaves out the
    dashboard of a private instance. Returns whether this call started Ray (False: it was already running).
    """
    import ray

    if ray.is_initialized():
        return False
    verbose = ray_verbose(verbose)
    if not verbose:
        quiet_ray_logging(log_dir)
        kwargs.setdefault("log_to_driver", False)
        kwargs.setdefault("logging_level", logging.WARNING)
    address = os.environ.get("RAY_ADDRESS", "local")
    if address == "local":
        kwargs.setdefault("_system_config", LOCAL_SYSTEM_CONFIG)
        if not dashboard:
            kwargs.setdefault("include_dashboard", False)
    ray.init(address=address, **kwargs)
    if not verbose and log_dir is not None:
        _link_session_logs(Path(log_dir))
    return True


def ray_verbose(verbose: bool | None = None) -> bool:
    """`verbose`, or when None whether RAYLESSONS_VERBOSE asks for Ray's console output."""
    return verbose if verbose is not None else os.environ.get("RAYLESSONS_VERBOSE", "") not in ("", "0")


RAY_LOGGERS = ("ray", "ray.train", "ray.tune", "ray.serve", "ray.data")


def quiet_ray_logging(log_dir: str | Path | None = None) -> None:
    """Ray's driver-side loggers off the console (to `log_dir/ray.log` when given); no colour codes."""
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    os.environ.setdefault("RAY_TQDM", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    handler = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(Path(log_dir) / "ray.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        if handler is not None and not any(getattr(h, "baseFilename", None) == handler.baseFilename
                                           for h in logger.handlers):
            logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO if handler is not None else logging.WARNING)


@contextlib.contextmanager
def redirect_output(log: str | Path | None):
    """Append everything printed inside the block to `log`: Python's stdout and stderr and the process's file
    descriptors 1 and 2 (what Ray's C++ core writes too). `None`: leave the console alone (verbose runs)."""
    if log is None:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            f.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _link_session_logs(log_dir: Path) -> None:
    """`log_dir/ray-session-logs` -> this Ray session's log folder (every worker's and actor's output)."""
    import ray

    try:
        session = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    except Exception:  # attached to a remote cluster: its logs are on its nodes
        return
    link = log_dir / "ray-session-logs"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(session)


def run_from_args(args: argparse.Namespace, task: str | None = None) -> dict:
    """Build a TrainRun from parsed options, run it on Ray Train, print and return the result."""
    from .train import TrainRun, fit_plan

    task = task or args.task
    task_config = task_config_from_args(args, task)
    run = TrainRun(task=task, plan=load_plan(args.plan, task), task_config=task_config,
                   name=args.name or f"{task}-{Path(args.data).name}", storage_path=args.storage,
                   num_workers=args.num_workers, use_gpu=args.use_gpu, cpus_per_worker=args.cpus_per_worker,
                   max_failures=args.max_failures, seed=args.seed)
    if run.num_workers > 0:  # 0: in this process, no Ray
        init_ray(verbose=getattr(args, "verbose", False) or None,
                 log_dir=Path(run.storage_path).expanduser() / run.name)
    result = fit_plan(run)
    print(json.dumps({"export": result["export"], "metrics": result["metrics"]}, indent=2, default=str))
    return result


def job_main(task: str, argv: list[str] | None = None, description: str | None = None,
             required: tuple[tuple[str, str], ...] = ()) -> int:
    """The body of every `jobs/<task>.py`: parse the options, run the plan on Ray Train, print the result.

    `required` adds mandatory task options as flags, e.g. (("lm_export", "help"),) -> `--lm-export DIR`.
    A RaylessonsError (bad data, plan or config) prints one line and returns 2.
    """
    import sys

    from ..errors import RaylessonsError

    parser = argparse.ArgumentParser(description=description)
    add_train_arguments(parser, task=task)
    for key, help_text in required:
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, required=True, help=help_text)
    args = parser.parse_args(argv)
    args.set += [f"{key}={getattr(args, key)}" for key, _ in required]
    try:
        run_from_args(args, task=task)
    except RaylessonsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
