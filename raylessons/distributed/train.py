"""Ray Train: run a plan on a TorchTrainer, report and checkpoint every epoch, resume by run name."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import storage
from ..cluster import init_ray
from ..errors import ConfigError, RaylessonsError
from ..plan import Stage, epochs_before, plan_to_data
from ..recorder import plot_loss_curves, print_epoch_table
from ..tasks import TASKS, get_task
from .checkpoints import checkpoint_dirs, newest_complete, prune_untracked, remove_dir
from .worker import BATCH_LOSSES, EPOCHS_FILE, EXPORT_DIR, WorkerConfig, run_worker, worker_config

__all__ = ["TrainRun", "checkpoint_name", "epoch_rows", "fit_plan", "fit_plan_here", "plot_run_losses",
           "print_run_table", "record_resume", "train_loop_per_worker"]

log = logging.getLogger("raylessons")

PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_SPREAD")  # Ray's placement-group strategies for the workers
RESUMES_FILE = "resumes.jsonl"  # one line per restart: the checkpoint resumed from (and what Ray offered)


@dataclass
class TrainRun:
    """Everything one Ray Train run needs, as plain data (also written next to its checkpoints as `run.json`).

    Its fields are the options of `raylessons train` and `jobs/<task>.py` (`--num-workers`, `--storage`, ...).
    """

    task: str = field(metadata={"help": "the workflow", "choices": tuple(TASKS)})
    plan: list | str = field(default="lesson", metadata={
        "help": "'lesson', 'smoke', a JSON list of stages or a .json/.yaml file (or, in Python, a list of stage "
                 "dicts or Stages)", "parse": str})
    task_config: dict = field(default_factory=dict, metadata={"help": "the task's options (its Config's fields)"})
    name: str | None = field(default=None, metadata={
        "help": "run name; the same name resumes from its last checkpoint", "default_text": "<task>-<data folder>"})
    storage_path: str = field(default="~/raylessons_results", metadata={
        "help": "where runs are stored: a local path, or a URI every node reaches (s3://bucket/prefix, "
                "gs://bucket/prefix)", "flag": "--storage"})
    num_workers: int = field(default=1, metadata={
        "help": "Ray Train workers (0: run in this process without Ray, e.g. to debug)"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker"})
    cpus_per_worker: float | None = field(default=None, metadata={
        "help": "CPUs of each worker", "default_text": "the cluster's CPUs / workers"})
    max_failures: int = field(default=0, metadata={
        "help": "restarts of the worker group after a worker dies (from the newest checkpoint)"})
    placement_strategy: str = field(default="PACK", metadata={
        "help": "where the workers go: PACK (as few nodes as possible), SPREAD (across nodes, best effort: a restart "
                "after a node is lost still fits on what is left) or STRICT_SPREAD (one node each)",
        "choices": PLACEMENT_STRATEGIES})
    num_to_keep: int = field(default=2, metadata={"help": "checkpoints kept"})
    seed: int = field(default=0, metadata={
        "help": "seed of the weights and of every epoch's augmentation and dropout"})

    def run_name(self) -> str:
        """`name`, or when None `<task>-<data folder name>`."""
        return self.name or f"{self.task}-{Path(get_task(self.task).config(self.task_config).data).name}"


def _prepare(run: TrainRun) -> tuple[TrainRun, list[Stage]]:
    """(`run` with its name filled in, its plan parsed once): bad options, plans or data fail here, before any worker
    starts (the stages' layer groups are checked in the workers, on the real model)."""
    if run.num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0 (0: in this process, without Ray), got {run.num_workers}")
    if run.placement_strategy not in PLACEMENT_STRATEGIES:
        raise ConfigError(f"placement_strategy must be one of {', '.join(PLACEMENT_STRATEGIES)}, "
                          f"got {run.placement_strategy!r}")
    task = get_task(run.task)
    cfg = task.config(run.task_config)
    stages = task.load_plan(run.plan)
    task.build_source(cfg)  # bad CSVs, missing files, empty cells
    return dataclasses.replace(run, name=run.run_name()), stages


def train_loop_per_worker(config: dict) -> None:
    """The per-worker function of the TorchTrainer: `run_worker` with Ray Train's rank, device and reporting."""
    import ray.train
    import ray.train.torch

    worker: WorkerConfig = config["worker"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    def report(metrics: dict, ckpt_dir: str | None, stage: int, epoch: int) -> None:
        ckpt = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=checkpoint_name(stage, epoch))

    wrap = (lambda m: ray.train.torch.prepare_model(m, move_to_device=False)) if world > 1 else None
    checkpoint = ray.train.get_checkpoint()
    if worker.run_dir:  # local or shared storage: resume from the newest whole checkpoint reported
        registered = checkpoint.path if checkpoint is not None else None
        if registered is not None and storage.is_uri(worker.run_dir):  # Ray's path has no scheme: a URI
            registered = storage.join(worker.run_dir, Path(registered).name)
        newest = newest_complete(worker.run_dir, registered, remove_newer_incomplete=rank == 0)
        if newest is not None and str(newest) != str(registered):
            if rank == 0:
                print(f"resuming from {Path(newest).name}, reported but not registered by Ray before the failure "
                      f"(Ray offered {Path(registered).name if registered else 'none'})", flush=True)
            checkpoint = (ray.train.Checkpoint(storage.fs_path(newest), filesystem=storage.filesystem(newest))
                          if storage.is_uri(newest) else ray.train.Checkpoint.from_directory(str(newest)))
        if checkpoint is not None and rank == 0:
            record_resume(worker.run_dir, checkpoint.path, registered)
    run_worker(worker, report, checkpoint, device=ray.train.torch.get_device(), rank=rank, world=world,
               wrap_model=wrap)


def fit_plan(run: TrainRun, callbacks: list | None = None) -> dict:
    """Run `run` on a TorchTrainer (starting or resuming `run.name`); returns metrics and the export path.

    `callbacks` go to the Train RunConfig (a Tune trial passes `TuneReportCallback()` to see every epoch).
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    run, stages = _prepare(run)
    if run.num_workers == 0:
        return _fit_here(run, stages)
    init_ray()
    # the controller polls workers every 2 s by default and a report waits for that poll (P3)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.0")
    cpus = run.cpus_per_worker or max(1.0, float(int(ray.cluster_resources().get("CPU", 1) // run.num_workers)))
    run_dir = _start_run_dir(run, stages)
    worker = worker_config(run.task, run.task_config, stages, seed=run.seed, cpus=cpus, run_dir=run_dir)
    remote = storage.is_uri(run_dir)  # a bucket: Ray Train writes the checkpoints there through pyarrow
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config={"worker": worker},
        scaling_config=ray.train.ScalingConfig(num_workers=run.num_workers, use_gpu=run.use_gpu,
                                               resources_per_worker={"CPU": cpus},
                                               placement_strategy=run.placement_strategy),
        run_config=ray.train.RunConfig(
            name=run.name, storage_path=storage.fs_path(run.storage_path) if remote else str(run_dir.parent),
            storage_filesystem=storage.filesystem(run_dir) if remote else None,
            # every OpenMP user in the worker agrees with torch's thread count (Ray exports 1); a bucket's
            # S3 endpoint and region (not its credentials) go with them
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(worker.threads),
                                             **(storage.forwarded_env() if remote else {})}},
            failure_config=ray.train.FailureConfig(max_failures=run.max_failures), callbacks=callbacks,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=run.num_to_keep)))
    try:
        with _epoch_progress(run_dir, epochs_before(stages, len(stages))):
            result = trainer.fit()
    except (ray.train.TrainingFailedError, ray.train.WorkerGroupError, ray.train.ControllerError) as e:
        raise RaylessonsError(f"training run {run.name!r} failed: {_root_cause(e)}") from e
    tracked = {c.path for c, _ in (result.best_checkpoints or [])} | {result.checkpoint.path}
    for d in prune_untracked(run_dir, tracked):  # e.g. one reported but never registered by Ray
        log.info("removed untracked checkpoint %s", d)
    print_run_table(run_dir)
    return _finish(run_dir, dict(result.metrics), result.checkpoint.path)


@contextlib.contextmanager
def _epoch_progress(run_dir: Path, total: int):
    """On a terminal, a bar over the plan's epochs while Ray Train runs it (from the rows rank 0 appends)."""
    if not sys.stdout.isatty():
        yield
        return
    done = threading.Event()

    def follow(bar) -> None:
        while not done.wait(1.0):
            rows = epoch_rows(run_dir)
            bar.update(len(rows) - bar.n)
            if rows and isinstance(rows[-1].get("valid_loss"), float):
                bar.set_postfix(valid_loss=f"{rows[-1]['valid_loss']:.4f}", refresh=False)

    with tqdm(total=total, desc="Ray Train", unit="epoch", leave=False, dynamic_ncols=True) as bar:
        thread = threading.Thread(target=follow, args=(bar,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def epoch_rows(run_dir: str | Path, with_stage: bool = False) -> list[dict]:
    """The run's epoch rows from `epochs.jsonl`, in plan order; an epoch replayed after a restart counts once.

    Each row holds the table's columns and `batch_losses`; `with_stage` keeps the plan stage (`stage`) too.
    """
    text = _read_run_file(run_dir, EPOCHS_FILE)
    if text is None:
        return []
    rows: dict = {}
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            stage = row["stage"] if with_stage else row.pop("stage")
            rows[(stage, row["epoch"])] = row
    return [rows[k] for k in sorted(rows)]


def _read_run_file(run_dir: str | Path, name: str) -> str | None:
    """The text of `run_dir/name` (local or a URI), None when it is not there."""
    if storage.is_uri(run_dir):
        uri = storage.join(run_dir, name)
        return storage.read_text(uri) if storage.exists(uri) else None
    path = Path(run_dir) / name
    return path.read_text() if path.is_file() else None


def print_run_table(run_dir: str | Path) -> None:
    """Print a Ray Train run's epoch-metrics table once, from the driver."""
    rows = [{k: v for k, v in row.items() if k != BATCH_LOSSES} for row in epoch_rows(run_dir)]
    if rows:
        print_epoch_table(rows)


def plot_run_losses(run_dir: str | Path, path: str | Path) -> Path:
    """The whole plan's loss curves (train per batch, validation per epoch, stage starts marked) as a PNG."""
    rows = epoch_rows(run_dir, with_stage=True)
    if not rows:
        raise RaylessonsError(f"{run_dir} holds no {EPOCHS_FILE}: the run reported no epoch yet")
    return plot_loss_curves([r.get(BATCH_LOSSES, []) for r in rows], [r.get("valid_loss") for r in rows],
                            [r["stage"] for r in rows], path)


def checkpoint_name(stage: int, epoch: int) -> str:
    """The directory name of the checkpoint written after `epoch` of `stage`."""
    return f"checkpoint_s{stage:02d}_e{epoch:03d}"


def record_resume(run_dir: str | Path, checkpoint: str | Path, registered: str | Path | None) -> None:
    """Append a restart to `run_dir/resumes.jsonl`: the checkpoint resumed from and the one Ray offered."""
    line = json.dumps({"time": time.time(), "checkpoint": Path(checkpoint).name,
                       "registered_by_ray": Path(registered).name if registered else None}) + "\n"
    if storage.is_uri(run_dir):  # one writer (rank 0): read, add the line, write back
        storage.write_text(storage.join(run_dir, RESUMES_FILE), (_read_run_file(run_dir, RESUMES_FILE) or "") + line)
        return
    with open(Path(run_dir) / RESUMES_FILE, "a") as f:
        f.write(line)


def _start_run_dir(run: TrainRun, stages) -> Path | str:
    """`storage/name`, created, with the run's description (`run.json`) written in it (a URI for a bucket: an
    unreachable bucket fails here, before any worker starts)."""
    if storage.is_uri(run.storage_path):
        run_dir = storage.join(run.storage_path, run.name)
        if not checkpoint_dirs(run_dir):
            storage.delete(storage.join(run_dir, EPOCHS_FILE))
        storage.write_text(storage.join(run_dir, "run.json"),
                           json.dumps({**asdict(run), "plan": plan_to_data(stages)}, indent=2))
        return run_dir
    run_dir = Path(run.storage_path).expanduser().resolve() / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    if not any(run_dir.glob("checkpoint_s*")):  # a fresh run: no epochs of an earlier one in its table
        (run_dir / EPOCHS_FILE).unlink(missing_ok=True)
    (run_dir / "run.json").write_text(json.dumps({**asdict(run), "plan": plan_to_data(stages)}, indent=2))
    return run_dir


def _finish(run_dir: Path | str, metrics: dict, checkpoint: str | Path) -> dict:
    """Copy the last checkpoint's export to `run_dir/export`; what `fit_plan` returns (URIs for a bucket)."""
    if storage.is_uri(run_dir):
        checkpoint, export = storage.join(run_dir, Path(checkpoint).name), storage.join(run_dir, EXPORT_DIR)
        storage.delete(export)
        storage.copy(storage.join(checkpoint, EXPORT_DIR), export)
        return {"metrics": metrics, "export": export, "checkpoint": checkpoint, "path": run_dir}
    export = run_dir / EXPORT_DIR
    if export.exists():
        shutil.rmtree(export)
    shutil.copytree(Path(checkpoint) / EXPORT_DIR, export)
    return {"metrics": metrics, "export": str(export), "checkpoint": str(checkpoint), "path": str(run_dir)}


class _LocalCheckpoint:
    """What `run_worker` reads of a checkpoint (a Ray Checkpoint's `path` and `as_directory`), on disk here."""

    def __init__(self, path: Path | str):
        self.path = str(path)

    @contextlib.contextmanager
    def as_directory(self):
        if not storage.is_uri(self.path):
            yield self.path
            return
        with tempfile.TemporaryDirectory(prefix="raylessons-ckpt-") as d:  # a checkpoint in a bucket
            yield str(storage.download(self.path, d))


def fit_plan_here(run: TrainRun) -> dict:
    """`run` in this process, without Ray (as `num_workers=0` does): the same plan, checkpoints, resume and export
    as `fit_plan` on Ray Train, for small jobs and for debugging (breakpoints work). Returns what `fit_plan` does."""
    return _fit_here(*_prepare(run))


def _fit_here(run: TrainRun, stages: list[Stage]) -> dict:
    if run.use_gpu and not torch.cuda.is_available():
        raise ConfigError("use_gpu is set but this process sees no CUDA device")
    run_dir = _start_run_dir(run, stages)
    newest = newest_complete(run_dir, None, remove_newer_incomplete=True)
    if newest is not None:
        record_resume(run_dir, newest, None)
    last: dict = {}

    def report(metrics: dict, ckpt_dir: str | None, stage: int, epoch: int) -> None:
        dest = storage.join(run_dir, checkpoint_name(stage, epoch))
        remove_dir(dest)
        if storage.is_uri(dest):
            storage.upload(ckpt_dir, dest)
        else:
            dest = Path(dest)
            shutil.copytree(ckpt_dir, dest)
        last.update(metrics=dict(metrics), checkpoint=dest)
        for old in checkpoint_dirs(run_dir)[:-run.num_to_keep]:
            remove_dir(old)

    worker = worker_config(run.task, run.task_config, stages, seed=run.seed, run_dir=run_dir, print_epochs=True)
    device = torch.device("cuda") if run.use_gpu else None
    run_worker(worker, report, _LocalCheckpoint(newest) if newest is not None else None, device=device)
    return _finish(run_dir, last["metrics"], last["checkpoint"])


def _root_cause(e: BaseException) -> str:
    """The first worker's error message rather than Ray's wrapper."""
    failures = getattr(e, "worker_failures", None) or {}
    for err in failures.values():
        return f"{type(err).__name__}: {err}".splitlines()[0][:2000]
    cause = e.__cause__ or e
    return str(cause).strip().splitlines()[-1][:2000] if str(cause).strip() else type(cause).__name__
