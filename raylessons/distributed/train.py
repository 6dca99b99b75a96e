"""Ray Train: run a plan on a TorchTrainer, report and checkpoint every epoch, resume by run name."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import ConfigError, RaylessonsError
from ..plan import next_position, parse_plan, plan_to_data, run_plan
from ..tasks import get_task
from .checkpoints import newest_complete, prune_untracked, write_manifest

__all__ = ["TrainRun", "fit_plan", "fit_plan_here", "train_loop_per_worker", "run_config_plan", "epoch_seed",
           "worker_threads", "use_sync_batchnorm", "epoch_rows", "print_run_table", "plot_run_losses", "EPOCHS_FILE",
           "BATCH_LOSSES"]

log = logging.getLogger("raylessons")

STATE_FILE, POSITION_FILE, EXPORT_DIR = "state.pt", "position.json", "export"
EPOCHS_FILE = "epochs.jsonl"  # one line per epoch (rank 0): what the driver prints as the run's table
BATCH_LOSSES = "batch_losses"  # in each line of EPOCHS_FILE: the epoch's smoothed train loss per batch (loss curves)
RESUMES_FILE = "resumes.jsonl"  # one line per restart: the checkpoint resumed from (and what Ray offered)


@dataclass
class TrainRun:
    """Everything one Ray Train run needs, as plain data (also written next to its checkpoints)."""

    task: str
    plan: list
    task_config: dict = field(default_factory=dict)
    name: str = "raylessons-run"
    storage_path: str = "~/raylessons_results"
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float | None = None
    max_failures: int = 0
    num_to_keep: int = 2
    seed: int = 0


def worker_threads(cpus_per_worker: float | None) -> int:
    """Torch threads for a worker: its whole CPU share (Ray would otherwise pin it to 1)."""
    return max(1, int(cpus_per_worker or 1))


def use_sync_batchnorm(learn) -> None:
    """Swap every BatchNorm for SyncBatchNorm (statistics over all workers' batches), keeping layer groups."""
    learn.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)
    # the groups may hold the old BatchNorm modules directly: rebuild them from the converted model
    learn.layer_groups = list(learn.splitter(learn.model)) if learn.splitter else [learn.model]
    learn.opt = None


def _position_of(ckpt) -> tuple[dict, dict]:
    with ckpt.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
        pos = json.loads((Path(d) / POSITION_FILE).read_text())
    return state, pos


def train_loop_per_worker(config: dict) -> None:
    """The per-worker function of the TorchTrainer: build data and learner, run the plan, report every epoch."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    def report(metrics: dict, ckpt_dir: str | None, stage: int, epoch: int) -> None:
        ckpt = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=checkpoint_name(stage, epoch))

    wrap = (lambda m: ray.train.torch.prepare_model(m, move_to_device=False)) if world > 1 else None
    checkpoint = ray.train.get_checkpoint()
    if config.get("run_dir"):  # local or shared storage: resume from the newest whole checkpoint reported
        registered = checkpoint.path if checkpoint is not None else None
        newest = newest_complete(config["run_dir"], registered, remove_newer_incomplete=rank == 0)
        if newest is not None and str(newest) != str(registered):
            if rank == 0:
                print(f"resuming from {newest.name}, reported but not registered by Ray before the failure "
                      f"(Ray offered {Path(registered).name if registered else 'none'})", flush=True)
            checkpoint = ray.train.Checkpoint.from_directory(str(newest))
        if checkpoint is not None and rank == 0:
            record_resume(config["run_dir"], checkpoint.path, registered)
    run_config_plan(config, report, checkpoint, device=ray.train.torch.get_device(), rank=rank,
                    world=world, wrap_model=wrap)


def run_config_plan(config: dict, report: Callable, checkpoint=None, device=None, rank: int = 0, world: int = 1,
                    wrap_model: Callable | None = None) -> None:
    """Build `config`'s task data and learner, resume from `checkpoint` (a Ray Checkpoint or None), run its plan.

    After every epoch `report(metrics, checkpoint_dir, stage, epoch)` is called on every rank; `checkpoint_dir`
    (rank 0 only, else None) holds the model/optimizer state, the position and, after the last epoch, the export.
    Ray Train workers and Tune trials both run plans through this function.
    """
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    task = get_task(config["task"])
    cfg = task.Config(**config["task_config"])
    src = task.build_source(cfg)
    learn = task.build_learner(task.build_data(cfg, src=src).distributed(rank, world, config["seed"]), cfg,
                               device=device)
    learn.is_main_process = rank == 0
    # in this process the table prints live; Ray Train workers and Tune trials leave it to the driver
    learn.recorder.verbose = bool(config.get("print_epochs", False))
    if world > 1 and learn.device.type == "cuda" and getattr(task, "SYNC_BN", False):
        use_sync_batchnorm(learn)
    if wrap_model is not None:
        learn.wrap_model = wrap_model
    stages = parse_plan(config["plan"], len(learn.layer_groups))

    start, state, restore, extra = (0, 0), None, None, {}
    if checkpoint is not None:
        state, pos = _position_of(checkpoint)
        start = next_position(stages, pos["stage"], pos["epoch"])
        # reported with every epoch after a restart: how many epochs the checkpoint it resumed from held
        extra["resumed_from_epochs"] = sum(s.epochs for s in stages[:pos["stage"]]) + pos["epoch"] + 1

        def restore(learn):
            learn.model.load_state_dict(state["model"])
            if start[1] > 0 and "opt" in state:  # a new stage starts with a fresh optimizer, as in fastai
                learn.opt.load_state_dict(state["opt"])
        if learn.is_main_process:
            print(f"resuming from stage {pos['stage']} epoch {pos['epoch']}: next {start}", flush=True)

    def resize(learn, size, bs=None):
        learn.data = task.build_data(cfg, size=size, src=src, bs=bs).distributed(rank, world, config["seed"])

    def on_epoch_begin(learn, stage: int, epoch: int) -> None:
        # every epoch draws its augmentations and dropout masks from a generator seeded by (seed, rank, epoch):
        # a run restarted from a checkpoint replays exactly what the uninterrupted run would have done
        learn.recorder.epoch_offset = sum(s.epochs for s in stages[:stage])
        torch.manual_seed(epoch_seed(config["seed"], rank, learn.recorder.epoch_offset + epoch))

    def on_epoch_end(learn, stage: int, epoch: int) -> None:
        last = stage == len(stages) - 1 and epoch == stages[stage].epochs - 1
        if rank == 0 and config.get("run_dir") and learn.recorder.epoch_rows:
            rec = learn.recorder
            batch_losses = rec.losses[len(rec.losses) - rec.nb_batches[-1]:] if rec.nb_batches else []
            with open(Path(config["run_dir"]) / EPOCHS_FILE, "a") as f:
                f.write(json.dumps({"stage": stage, **_jsonable(rec.epoch_rows[-1]),
                                    BATCH_LOSSES: [round(float(v), 6) for v in batch_losses]}) + "\n")
        _report_epoch(learn, stage, epoch, stages, rank, last, report, extra)

    if start[0] >= len(stages):  # every stage finished before the restart: only the export is missing
        learn.model.load_state_dict(state["model"])
        saved = {k: v for k, v in pos.get("metrics", {}).items()  # the last epoch's numbers, as they were
                 if k not in ("stage", "stage_epoch", "training_iteration_epochs", "done")}
        _report_epoch(learn, len(stages) - 1, stages[-1].epochs - 1, stages, rank, True, report, {**saved, **extra})
        return
    run_plan(learn, stages, start, on_epoch_end=on_epoch_end, restore=restore, resize=resize,
             on_epoch_begin=on_epoch_begin)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The torch seed of epoch `epoch` (counted over the whole plan) on rank `rank` of a run seeded `seed`."""
    return (seed * 1_000_003 + rank * 10_007 + epoch) % 2**63


def _report_epoch(learn, stage: int, epoch: int, stages, rank: int, last: bool, report: Callable,
                  extra: dict | None = None) -> None:
    row = dict(learn.recorder.epoch_rows[-1]) if learn.recorder.epoch_rows else {}
    row.pop("epoch", None)
    done_epochs = sum(s.epochs for s in stages[:stage]) + epoch + 1
    metrics = {**row, "stage": stage, "stage_epoch": epoch, "training_iteration_epochs": done_epochs,
               "done": last, **(extra or {})}
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            state = {"model": learn.model.state_dict()}
            if learn.opt is not None:
                state["opt"] = learn.opt.state_dict()
            torch.save(state, Path(d) / STATE_FILE)
            (Path(d) / POSITION_FILE).write_text(json.dumps({"stage": stage, "epoch": epoch,
                                                             "metrics": _jsonable(metrics)}))
            if last:
                learn.export(Path(d) / EXPORT_DIR)
            write_manifest(d)  # last: a copy missing any file (or cut short) is not taken for a checkpoint
        report(metrics, d if rank == 0 else None, stage, epoch)


def _jsonable(d: dict) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in d.items()}


def fit_plan(run: TrainRun, callbacks: list | None = None) -> dict:
    """Run `run` on a TorchTrainer (starting or resuming `run.name`); returns metrics and the export path.

    `callbacks` go to the Train RunConfig (a Tune trial passes `TuneReportCallback()` to see every epoch).
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    if run.num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0 (0: in this process, without Ray), got {run.num_workers}")
    task = get_task(run.task)
    cfg = task.Config(**run.task_config)
    stages = parse_plan(run.plan, None)  # layer-group bounds are checked again in the workers, on the real model
    task.build_source(cfg)  # bad CSVs, missing files, empty cells: fail here, before any worker starts
    if run.num_workers == 0:
        return fit_plan_here(run, cfg, stages)
    from .launch import init_ray

    init_ray()
    # the controller polls workers every 2 s by default and a report waits for that poll (P3)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.0")
    cpus = run.cpus_per_worker or max(1.0, float(int(ray.cluster_resources().get("CPU", 1) // run.num_workers)))
    run_dir = _start_run_dir(run, stages)
    config = _worker_config(run, cfg, worker_threads(cpus), run_dir)
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=run.num_workers, use_gpu=run.use_gpu,
                                               resources_per_worker={"CPU": cpus}),
        run_config=ray.train.RunConfig(
            name=run.name, storage_path=str(run_dir.parent),
            # every OpenMP user in the worker agrees with torch's thread count (Ray exports 1)
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(config["threads"])}},
            failure_config=ray.train.FailureConfig(max_failures=run.max_failures), callbacks=callbacks,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=run.num_to_keep)))
    try:
        with _epoch_progress(run_dir, sum(st.epochs for st in stages)):
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
    import sys
    import threading

    if not sys.stdout.isatty():
        yield
        return
    from tqdm.auto import tqdm

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
    path = Path(run_dir) / EPOCHS_FILE
    if not path.is_file():
        return []
    rows: dict = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            stage = row["stage"] if with_stage else row.pop("stage")
            rows[(stage, row["epoch"])] = row
    return [rows[k] for k in sorted(rows)]


def print_run_table(run_dir: str | Path) -> None:
    """Print a Ray Train run's epoch-metrics table once, from the driver."""
    from ..recorder import print_epoch_table

    rows = [{k: v for k, v in row.items() if k != BATCH_LOSSES} for row in epoch_rows(run_dir)]
    if rows:
        print_epoch_table(rows)


def plot_run_losses(run_dir: str | Path, path: str | Path) -> Path:
    """The whole plan's loss curves (train per batch, validation per epoch, stage starts marked) as a PNG."""
    from ..recorder import plot_loss_curves

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
    with open(Path(run_dir) / RESUMES_FILE, "a") as f:
        f.write(json.dumps({"time": time.time(), "checkpoint": Path(checkpoint).name,
                            "registered_by_ray": Path(registered).name if registered else None}) + "\n")


def _start_run_dir(run: TrainRun, stages) -> Path:
    """`storage/name`, created, with the run's description (`run.json`) written in it."""
    run_dir = Path(run.storage_path).expanduser().resolve() / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    if not any(run_dir.glob("checkpoint_s*")):  # a fresh run: no epochs of an earlier one in its table
        (run_dir / EPOCHS_FILE).unlink(missing_ok=True)
    (run_dir / "run.json").write_text(json.dumps({**asdict(run), "plan": plan_to_data(stages)}, indent=2))
    return run_dir


def _worker_config(run: TrainRun, cfg, threads: int, run_dir: Path) -> dict:
    """What `run_config_plan` needs, as plain data."""
    return {"task": run.task, "task_config": asdict(cfg), "plan": run.plan, "seed": run.seed, "threads": threads,
            "run_dir": str(run_dir)}


def _finish(run_dir: Path, metrics: dict, checkpoint: str | Path) -> dict:
    """Copy the last checkpoint's export to `run_dir/export`; what `fit_plan` returns."""
    export = run_dir / EXPORT_DIR
    if export.exists():
        shutil.rmtree(export)
    shutil.copytree(Path(checkpoint) / EXPORT_DIR, export)
    return {"metrics": metrics, "export": str(export), "checkpoint": str(checkpoint), "path": str(run_dir)}


class _LocalCheckpoint:
    """What `run_config_plan` reads of a checkpoint (a Ray Checkpoint's `path` and `as_directory`), on disk here."""

    def __init__(self, path: Path):
        self.path = str(path)

    def as_directory(self):
        return contextlib.nullcontext(self.path)


def fit_plan_here(run: TrainRun, cfg=None, stages=None) -> dict:
    """`run` in this process, without Ray (`num_workers=0`): the same plan, checkpoints, resume and export as
    `fit_plan` on Ray Train, for small jobs and for debugging (breakpoints work). Returns what `fit_plan` does."""
    if run.use_gpu and not torch.cuda.is_available():
        raise ConfigError("use_gpu is set but this process sees no CUDA device")
    cfg = cfg if cfg is not None else get_task(run.task).Config(**run.task_config)
    stages = stages if stages is not None else parse_plan(run.plan, None)
    run_dir = _start_run_dir(run, stages)
    newest = newest_complete(run_dir, None, remove_newer_incomplete=True)
    if newest is not None:
        record_resume(run_dir, newest, None)
    last: dict = {}

    def report(metrics: dict, ckpt_dir: str | None, stage: int, epoch: int) -> None:
        dest = run_dir / checkpoint_name(stage, epoch)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(ckpt_dir, dest)
        last.update(metrics=dict(metrics), checkpoint=dest)
        kept = sorted((p for p in run_dir.glob("checkpoint_s*") if p.is_dir()), key=lambda p: p.name)
        for old in kept[:-run.num_to_keep]:
            shutil.rmtree(old, ignore_errors=True)

    config = {**_worker_config(run, cfg, torch.get_num_threads(), run_dir), "print_epochs": True}
    device = torch.device("cuda") if run.use_gpu else None
    run_config_plan(config, report, _LocalCheckpoint(newest) if newest is not None else None, device=device)
    return _finish(run_dir, last["metrics"], last["checkpoint"])


def _root_cause(e: BaseException) -> str:
    """The first worker's error message rather than Ray's wrapper."""
    failures = getattr(e, "worker_failures", None) or {}
    for err in failures.values():
        return f"{type(err).__name__}: {err}".splitlines()[0][:2000]
    cause = e.__cause__ or e
    return str(cause).strip().splitlines()[-1][:2000] if str(cause).strip() else type(cause).__name__
