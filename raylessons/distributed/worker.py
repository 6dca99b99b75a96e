"""One process's share of a run: build the task's data and learner, resume, run the plan, report every epoch.

Ray Train workers, single-worker Tune trials and `num_workers=0` runs all go through `run_worker`, with a
`WorkerConfig` (plain data, Stages included) that `worker_config` builds the same way for each.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import storage
from ..callbacks.tensorboard import TensorBoardCallback
from ..plan import Stage, epochs_before, next_position, run_plan
from ..tasks import get_task
from .checkpoints import write_manifest

__all__ = ["BATCH_LOSSES", "EPOCHS_FILE", "EXPORT_DIR", "POSITION_FILE", "STATE_FILE", "TENSORBOARD_DIR",
           "WorkerConfig", "epoch_seed", "run_worker", "use_sync_batchnorm", "worker_config", "worker_threads"]

STATE_FILE, POSITION_FILE, EXPORT_DIR = "state.pt", "position.json", "export"
EPOCHS_FILE = "epochs.jsonl"  # one line per epoch (rank 0): what the driver prints as the run's table
BATCH_LOSSES = "batch_losses"  # in each line of EPOCHS_FILE: the epoch's smoothed train loss per batch (loss curves)
TENSORBOARD_DIR = "tensorboard"  # rank 0's TensorBoard event files, in run_dir (a resumed run adds a file)


@dataclass
class WorkerConfig:
    """What a process running a plan needs, as plain data (it travels to Ray workers and trials as it is)."""

    task: str
    task_config: dict               # every option of the task's Config
    stages: list[Stage]
    seed: int = 0
    threads: int = 1                # torch threads of this process
    run_dir: str | None = None      # rank 0: run_dir/epochs.jsonl (a row per epoch), run_dir/tensorboard (a URI:
                                    # written locally, uploaded after every epoch; see _RunFiles)
    print_epochs: bool = False      # the epoch table printed live (in this process; Ray runs leave it to the driver)


def worker_threads(cpus_per_worker: float | None) -> int:
    """Torch threads for a worker: its whole CPU share (Ray would otherwise pin it to 1)."""
    return max(1, int(cpus_per_worker or 1))


def worker_config(task: str, task_config: dict, stages: list[Stage], *, seed: int = 0, cpus: float | None = None,
                  run_dir: str | Path | None = None, print_epochs: bool = False) -> WorkerConfig:
    """The WorkerConfig of a Train run or a Tune trial: the task's options resolved and checked, threads from
    the worker's CPU share (`cpus`; None: this process's torch threads)."""
    options = asdict(get_task(task).config(task_config))
    threads = worker_threads(cpus) if cpus is not None else torch.get_num_threads()
    return WorkerConfig(task=task, task_config=options, stages=list(stages), seed=seed, threads=threads,
                        run_dir=str(run_dir) if run_dir is not None else None, print_epochs=print_epochs)


def use_sync_batchnorm(learn) -> None:
    """Swap every BatchNorm for SyncBatchNorm (statistics over all workers' batches), keeping layer groups."""
    learn.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)
    # the groups may hold the old BatchNorm modules directly: rebuild them from the converted model
    learn.layer_groups = list(learn.splitter(learn.model)) if learn.splitter else [learn.model]
    learn.opt = None


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The torch seed of epoch `epoch` (counted over the whole plan) on rank `rank` of a run seeded `seed`."""
    return (seed * 1_000_003 + rank * 10_007 + epoch) % 2**63


def _position_of(ckpt) -> tuple[dict, dict]:
    with ckpt.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
        pos = json.loads((Path(d) / POSITION_FILE).read_text())
    return state, pos


def run_worker(worker: WorkerConfig, report: Callable, checkpoint=None, device=None, rank: int = 0, world: int = 1,
               wrap_model: Callable | None = None) -> None:
    """Build `worker`'s task data and learner, resume from `checkpoint` (a Ray Checkpoint or None), run its plan.

    After every epoch `report(metrics, checkpoint_dir, stage, epoch)` is called on every rank; `checkpoint_dir`
    (rank 0 only, else None) holds the model/optimizer state, the position and, after the last epoch, the export.
    """
    torch.set_num_threads(worker.threads)
    torch.manual_seed(worker.seed)
    task, stages = get_task(worker.task), worker.stages
    cfg = task.config(worker.task_config)
    src = task.build_source(cfg)

    def data(size=None, bs=None):
        return task.build_data(cfg, size=size, src=src, bs=bs).distributed(rank, world, worker.seed)

    def resize(learn, size, bs=None) -> None:
        learn.data = data(size, bs)

    learn = task.build_learner(data(), cfg, device=device)
    learn.is_main_process = rank == 0
    learn.recorder.verbose = worker.print_epochs
    if world > 1 and learn.device.type == "cuda" and task.sync_bn:
        use_sync_batchnorm(learn)
    if wrap_model is not None:
        learn.wrap_model = wrap_model

    start, state, pos, extra = (0, 0), None, {}, {}
    if checkpoint is not None:
        state, pos = _position_of(checkpoint)
        start = next_position(stages, pos["stage"], pos["epoch"])
        # reported with every epoch after a restart: how many epochs the checkpoint it resumed from held
        extra["resumed_from_epochs"] = epochs_before(stages, pos["stage"], pos["epoch"] + 1)
        if learn.is_main_process:
            print(f"resuming from stage {pos['stage']} epoch {pos['epoch']}: next {start}", flush=True)
    if start[0] >= len(stages):  # every stage finished before the restart: only the export is missing
        learn.model.load_state_dict(state["model"])
        saved = {k: v for k, v in pos.get("metrics", {}).items()  # the last epoch's numbers, as they were
                 if k not in ("stage", "stage_epoch", "training_iteration_epochs", "done")}
        _report_epoch(learn, len(stages) - 1, stages[-1].epochs - 1, stages, rank, report, {**saved, **extra})
        return

    def on_epoch_begin(learn, stage: int, epoch: int) -> None:
        # every epoch draws its augmentations and dropout masks from a generator seeded by (seed, rank, epoch):
        # a run restarted from a checkpoint replays exactly what the uninterrupted run would have done
        learn.recorder.epoch_offset = epochs_before(stages, stage)
        torch.manual_seed(epoch_seed(worker.seed, rank, epochs_before(stages, stage, epoch)))

    files = _RunFiles(worker.run_dir) if rank == 0 and worker.run_dir else None
    tb = _tensorboard(learn, files.local if files else None, stages, start, pos)

    def on_epoch_end(learn, stage: int, epoch: int) -> None:
        if files is not None and learn.recorder.epoch_rows:
            _append_epoch_row(learn, files.local, stage)
            files.push()  # before the report: the driver reads the row once the checkpoint is registered
        _report_epoch(learn, stage, epoch, stages, rank, report, extra, tb.batch_step if tb else None)

    try:  # run_plan checks the stages' layer groups against the real model
        run_plan(learn, stages, start, on_epoch_end=on_epoch_end, resize=resize, on_epoch_begin=on_epoch_begin,
                 restore=_restorer(state, start) if state is not None else None)
    finally:
        if tb is not None:
            tb.close()
        if files is not None:
            files.close()


class _RunFiles:
    """Rank 0's files of a run (EPOCHS_FILE, TENSORBOARD_DIR): in its run_dir, or, for a run stored at a URI, in a
    local directory of this process uploaded to the URI after every epoch (the table downloaded first, to append
    to; a restarted rank 0 adds its own TensorBoard event file beside the earlier ones, as on disk)."""

    def __init__(self, run_dir: str):
        self.uri = run_dir if storage.is_uri(run_dir) else None
        self.local = Path(tempfile.mkdtemp(prefix="raylessons-run-")) if self.uri else Path(run_dir)
        if self.uri and storage.exists(storage.join(self.uri, EPOCHS_FILE)):
            storage.download(storage.join(self.uri, EPOCHS_FILE), self.local / EPOCHS_FILE)

    def push(self) -> None:
        for name in (EPOCHS_FILE, TENSORBOARD_DIR) if self.uri else ():
            if (self.local / name).exists():
                storage.upload(self.local / name, storage.join(self.uri, name))

    def close(self) -> None:
        if self.uri:
            self.push()
            shutil.rmtree(self.local, ignore_errors=True)


def _tensorboard(learn, run_dir: Path | None, stages: list[Stage], start: tuple[int, int],
                 pos: dict) -> TensorBoardCallback | None:
    """Rank 0 of a run with a run_dir logs to run_dir/tensorboard (`run_dir`: None on other ranks); a resumed run
    goes on from the checkpoint's step counts (its train batches, kept in the position; estimated for checkpoints
    written without them)."""
    if run_dir is None:
        return None
    epochs = epochs_before(stages, *start)
    batches = pos.get("train_batches", epochs * len(learn.data.train_dl))
    tb = TensorBoardCallback(run_dir / TENSORBOARD_DIR, batch_step=batches, epoch_step=epochs,
                             resume=bool(pos))
    learn.callbacks.append(tb)  # the learner's own list: every stage's fit (and resize) keeps it
    return tb


def _restorer(state: dict, start: tuple[int, int]) -> Callable:
    """What `run_plan` calls before the resumed stage: the weights and, within a stage, the optimizer's state."""
    def restore(learn) -> None:
        learn.model.load_state_dict(state["model"])
        if start[1] > 0 and "opt" in state:  # a new stage starts with a fresh optimizer, as in fastai
            learn.opt.load_state_dict(state["opt"])
    return restore


def _append_epoch_row(learn, run_dir: Path, stage: int) -> None:
    """The epoch's row of the run's table (and its per-batch train losses) appended to run_dir/epochs.jsonl."""
    rec = learn.recorder
    batch_losses = rec.losses[len(rec.losses) - rec.nb_batches[-1]:] if rec.nb_batches else []
    with open(run_dir / EPOCHS_FILE, "a") as f:
        f.write(json.dumps({"stage": stage, **_jsonable(rec.epoch_rows[-1]),
                            BATCH_LOSSES: [round(float(v), 6) for v in batch_losses]}) + "\n")


def _report_epoch(learn, stage: int, epoch: int, stages: list[Stage], rank: int, report: Callable,
                  extra: dict | None = None, train_batches: int | None = None) -> None:
    row = dict(learn.recorder.epoch_rows[-1]) if learn.recorder.epoch_rows else {}
    row.pop("epoch", None)
    last = stage == len(stages) - 1 and epoch == stages[stage].epochs - 1
    # layer groups that trained whole in this epoch (a frozen group keeps only its BatchNorm trainable)
    unfrozen = sum(all(p.requires_grad for p in g.parameters()) for g in learn.layer_groups)
    metrics = {**row, "stage": stage, "stage_epoch": epoch, "unfrozen_groups": unfrozen,
               "training_iteration_epochs": epochs_before(stages, stage, epoch + 1), "done": last, **(extra or {})}
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            state = {"model": learn.model.state_dict()}
            if learn.opt is not None:
                state["opt"] = learn.opt.state_dict()
            torch.save(state, Path(d) / STATE_FILE)
            position = {"stage": stage, "epoch": epoch, "metrics": _jsonable(metrics)}
            if train_batches is not None:  # the TensorBoard step a resumed run goes on from
                position["train_batches"] = train_batches
            (Path(d) / POSITION_FILE).write_text(json.dumps(position))
            if last:
                learn.export(Path(d) / EXPORT_DIR)
            write_manifest(d)  # last: a copy missing any file (or cut short) is not taken for a checkpoint
        report(metrics, d if rank == 0 else None, stage, epoch)


def _jsonable(d: dict) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in d.items()}
