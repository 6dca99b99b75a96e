"""One Tune trial: its config becomes a plan (`plan.json` in the trial directory), run in the trial itself or on
Ray Train workers, reporting every epoch to Tune. A trial run in itself logs to TensorBoard in
`<trial dir>/tensorboard`; one on Ray Train workers in its Train run's directory (`<train storage>/train-<id>`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..distributed.train import TrainRun, fit_plan
from ..distributed.worker import run_worker, worker_config
from ..plan import parse_plan
from .space import plan_from_config

__all__ = ["TrialSetup", "sweep_trial"]


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares (handed to each by `tune.with_parameters`)."""

    task: str
    task_config: dict
    epochs: int             # the trial's epoch budget
    n_groups: int           # layer groups of the task's model (schedules are checked against them)
    workers_per_trial: int  # > 1: the trial drives a TorchTrainer of that many DDP workers
    cpus: float             # per worker
    gpus: float             # per worker
    seed: int
    train_storage: str      # where DDP trials' Train runs are stored
    max_failures: int = 0   # a DDP trial's worker-group restarts (Tune retries the trial itself as often)


def sweep_trial(config: dict, setup: TrialSetup) -> None:
    """A Tune function trainable: this trial's plan, run in the trial or on Ray Train workers."""
    from ray import tune  # a trial runs inside Ray: Tune is there

    plan = plan_from_config(config, setup.epochs, setup.n_groups)
    trial_dir = Path(tune.get_context().get_trial_dir())
    (trial_dir / "plan.json").write_text(json.dumps(plan, indent=1))
    stages = parse_plan(plan, setup.n_groups)
    if setup.workers_per_trial > 1:
        from ray.tune.integration.ray_train import TuneReportCallback

        run = TrainRun(task=setup.task, plan=stages, task_config=setup.task_config,
                       name=f"train-{tune.get_context().get_trial_id()}", storage_path=setup.train_storage,
                       num_workers=setup.workers_per_trial, use_gpu=setup.gpus > 0, cpus_per_worker=setup.cpus,
                       seed=setup.seed, max_failures=setup.max_failures)
        fit_plan(run, callbacks=[TuneReportCallback()])
        return
    import ray

    node = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, ckpt_dir: str | None, stage: int, epoch: int) -> None:
        ckpt = tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        tune.report({**metrics, "node_id": node}, checkpoint=ckpt)

    # the trial directory is the run's: epochs.jsonl and the TensorBoard events (tensorboard/) beside plan.json
    worker = worker_config(setup.task, setup.task_config, stages, seed=setup.seed, cpus=setup.cpus, run_dir=trial_dir)
    run_worker(worker, report, tune.get_checkpoint())
