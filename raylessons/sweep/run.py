"""A Ray Tune sweep of learning-rate bands and unfreezing schedules, guided by the LR finders.

    run_sweep(SweepConfig(task="planet", task_config={...}, trials=8, max_concurrent=2, scheduler="asha"))

1. Every option is checked and the search space built once with placeholder guides (an empty space, an
   unknown schedule or scheduler fail here, before Ray starts).
   The task's learner is built once here (CPU, no training) to check the schedules against its layer groups
   and the metric against what it reports.
2. The two LR finders run as Ray tasks (`finder.run_finders`); their PNGs and curves are stored in the
   experiment directory.
3. A `Tuner` runs the trials: each turns its config into a plan (`space.plan_from_config`, written as
   `plan.json` in the trial directory) and runs it, reporting the task metric every epoch, in the trial
   itself (1 worker) or on a TorchTrainer with `workers_per_trial` DDP workers. ASHA (or FIFO) decides.
   The experiment name is a hash of the sweep's options, so running the same sweep again after a crash
   restores it with `Tuner.restore` (finished trials are kept, unfinished ones resumed from their last epoch).
4. Results: `results.csv` and `results.md` (sorted by the metric), `metric_vs_lr.png`, and the best finished
   trial's export copied to `best_export/` (what `raylessons serve --export task=DIR` takes).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, RaylessonsError
from ..tasks import TASKS, get_task
from .space import build_space, check_schedule, plan_from_config

__all__ = ["SweepConfig", "run_sweep", "sweep_trial", "experiment_name", "plan_summary"]

SCHEDULERS = ("asha", "fifo")


@dataclass
class SweepConfig:
    """Everything a sweep needs, as plain data (its hash names the experiment)."""

    task: str
    task_config: dict = field(default_factory=dict)
    trials: int = 8
    max_concurrent: int = 2
    scheduler: str = "asha"
    epochs: int = 4                      # the epoch budget of every trial (ASHA's max_t)
    grace_period: int = 1
    reduction_factor: int = 2
    metric: str | None = None            # default: the task's METRIC
    mode: str | None = None              # default: the task's MODE
    schedules: list = field(default_factory=lambda: ["two_stage"])
    ratios: list = field(default_factory=lambda: [10.0, 100.0])
    band: float = 3.0
    stage1_fracs: list = field(default_factory=lambda: [0.25, 0.5])
    pct_start: list | None = None
    moms: list | None = None
    wd: list | None = None
    divisor: float = 5.0                 # unfrozen upper = stage-1 rate / divisor
    warmup_epochs: int = 1               # frozen epochs before the unfrozen finder
    finder_iters: int = 100              # batches of each LR finder run (lr_find's num_it)
    guide_clamp: list = field(default_factory=lambda: [1e-4, 1e-1])  # the frozen guide is kept in this range
    workers_per_trial: int = 1
    cpus_per_trial: float | None = None  # default: the cluster's CPUs / max_concurrent (per worker if DDP)
    gpus_per_trial: float = 0            # per worker; fractions only for single-worker trials
    configs: list | None = None          # explicit trial configs (evaluated first, e.g. a benchmark's fixed plans)
    storage_path: str = "~/raylessons_results"
    name: str | None = None              # default: experiment_name(self)
    seed: int = 0
    verbose: int = 1                     # Tune's progress output: 0 silent, 1 status tables, 2 every result


def experiment_name(cfg: SweepConfig) -> str:
    """`sweep-<task>-<hash>`: the same options give the same name, so a rerun restores the experiment."""
    data = dataclasses.asdict(cfg)
    data.pop("name"), data.pop("storage_path"), data.pop("verbose")
    digest = hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"sweep-{cfg.task}-{digest}"


def plan_summary(plan: list[dict]) -> str:
    """'freeze 1ep slice(0.01) → unfreeze 3ep slice(0.0001, 0.002)' (how the tables show a plan)."""
    parts = []
    for st in plan:
        what = ("freeze" if st.get("freeze") else "unfreeze" if st.get("unfreeze") else
                f"freeze_to({st['freeze_to']})" if "freeze_to" in st else "fit")
        parts.append(f"{what} {st['epochs']}ep {st['max_lr']}")
    return " → ".join(parts)


def _check(cfg: SweepConfig) -> tuple[str, str]:
    if cfg.task not in TASKS:
        raise ConfigError(f"unknown task {cfg.task!r}; choose one of {', '.join(TASKS)}")
    task = get_task(cfg.task)
    if cfg.scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {cfg.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    for name in ("trials", "max_concurrent", "epochs", "grace_period", "workers_per_trial", "finder_iters"):
        if int(getattr(cfg, name)) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if len(cfg.guide_clamp) != 2 or not 0 < cfg.guide_clamp[0] < cfg.guide_clamp[1]:
        raise ConfigError(f"guide_clamp must be [low, high] with 0 < low < high, got {cfg.guide_clamp}")
    if cfg.reduction_factor < 2:
        raise ConfigError(f"reduction_factor must be >= 2, got {cfg.reduction_factor}")
    if cfg.gpus_per_trial < 0 or (cfg.workers_per_trial > 1 and cfg.gpus_per_trial not in (0, 1)):
        raise ConfigError(f"gpus_per_trial={cfg.gpus_per_trial}: DDP trials ({cfg.workers_per_trial} workers) "
                          "take whole GPUs (0 or 1 per worker); fractions are for single-worker trials")
    mode = cfg.mode or task.MODE
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
    if cfg.configs is not None and not cfg.configs:
        raise ConfigError("configs is an empty list: the search space is empty")
    build_space(1e-2, 1e-3, band=cfg.band, ratios=cfg.ratios, schedules=cfg.schedules,  # fail before Ray
                stage1_fracs=cfg.stage1_fracs, pct_start=cfg.pct_start, moms=cfg.moms, wd=cfg.wd)
    for sched in cfg.schedules:
        plan_from_config({"schedule": sched, "stage1_lr": 1e-2, "upper": 1e-3}, cfg.epochs)  # budget fits
    for point in cfg.configs or []:
        missing = {"stage1_lr", "upper"} - set(point)
        if missing:
            raise ConfigError(f"trial config {point} lacks {sorted(missing)}")
        plan_from_config(point, cfg.epochs)
    task.Config(**cfg.task_config)  # unknown task options fail here
    return cfg.metric or task.METRIC, mode


def sweep_trial(config: dict, setup: dict) -> None:
    """A Tune function trainable: this trial's plan, run in the trial or on Ray Train workers."""
    from ray import tune

    plan = plan_from_config(config, setup["epochs"], setup["n_groups"])
    trial_dir = Path(tune.get_context().get_trial_dir())
    (trial_dir / "plan.json").write_text(json.dumps(plan, indent=1))
    if setup["workers_per_trial"] > 1:
        from ray.tune.integration.ray_train import TuneReportCallback

        from ..distributed.train import TrainRun, fit_plan

        run = TrainRun(task=setup["task"], plan=plan, task_config=setup["task_config"],
                       name=f"train-{tune.get_context().get_trial_id()}", storage_path=setup["train_storage"],
                       num_workers=setup["workers_per_trial"], use_gpu=setup["gpus"] > 0,
                       cpus_per_worker=setup["cpus"], seed=setup["seed"])
        fit_plan(run, callbacks=[TuneReportCallback()])
        return
    import ray

    from ..distributed.train import run_config_plan

    node = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, ckpt_dir: str | None, stage: int, epoch: int) -> None:
        ckpt = tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        tune.report({**metrics, "node_id": node}, checkpoint=ckpt)

    run_config_plan({"task": setup["task"], "task_config": setup["task_config"], "plan": plan,
                     "seed": setup["seed"], "threads": max(1, int(setup["cpus"]))}, report, tune.get_checkpoint())


def _model_facts(cfg: SweepConfig) -> tuple[int, list[str]]:
    """(layer groups of the task's model, the metrics its epochs report), from a learner built here on the CPU."""
    from ..tasks import build_task_learner

    learn = build_task_learner(cfg.task, cfg.task_config, device="cpu")
    return len(learn.layer_groups), ["train_loss", "valid_loss", *learn.metric_names]


def _resources(cfg: SweepConfig, cluster_cpus: float) -> tuple[dict, float]:
    """(the trial's Tune resources, CPUs per worker)."""
    if cfg.workers_per_trial > 1:
        # the trial only drives the TorchTrainer (0.01 CPU: 0 is refused); its workers share what is left. Whole
        # CPUs per worker would ask for 2.01 of 2 CPUs, and Train waits for them forever (found by the tests)
        share = (cluster_cpus - 0.01 * cfg.max_concurrent) / (cfg.max_concurrent * cfg.workers_per_trial)
        cpus = cfg.cpus_per_trial or (float(int(share)) if share >= 1.5 else math.floor(share * 100) / 100)
        if cpus <= 0:
            raise ConfigError(f"{cfg.max_concurrent} concurrent trials x {cfg.workers_per_trial} workers do not fit "
                              f"in {cluster_cpus:g} CPUs")
        return {"cpu": 0.01}, cpus
    cpus = cfg.cpus_per_trial or max(1.0, float(int(cluster_cpus // cfg.max_concurrent)))
    res = {"cpu": cpus}
    if cfg.gpus_per_trial:
        res["gpu"] = cfg.gpus_per_trial
    return res, cpus


def run_sweep(cfg: SweepConfig) -> dict:
    """Run (or restore) the sweep; returns the table rows, the best trial and the paths of what was written."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from ..distributed.launch import init_ray
    from .finder import run_finders

    metric, mode = _check(cfg)
    # every epoch checkpoints (resume, ASHA pauses); Tune would warn about the forced state snapshots each time
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    n_groups, reported = _model_facts(cfg)  # bad data, metric or schedule: fail before Ray starts
    if metric not in reported:
        raise ConfigError(f"the {cfg.task} task does not report {metric!r}; it reports {', '.join(reported)}")
    for s in cfg.schedules:
        check_schedule(s, n_groups, f"the {cfg.task} model")
    for point in cfg.configs or []:
        plan_from_config(point, cfg.epochs, n_groups)
    name = cfg.name or experiment_name(cfg)
    storage = Path(cfg.storage_path).expanduser().resolve()
    exp = storage / name
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "sweep.json").write_text(json.dumps({**dataclasses.asdict(cfg), "name": name}, indent=1, default=str))
    init_ray(log_dir=exp)  # quiet unless RAYLESSONS_VERBOSE: Ray's lines go to exp/ray.log
    trial_res, cpus = _resources(cfg, ray.cluster_resources().get("CPU", 1))

    finders = run_finders(cfg.task, cfg.task_config, exp, cpus=cpus, gpus=min(cfg.gpus_per_trial, 1),
                          warmup_epochs=cfg.warmup_epochs, divisor=cfg.divisor, seed=cfg.seed,
                          num_it=cfg.finder_iters, clamp=tuple(cfg.guide_clamp))
    frozen, unfrozen = finders["frozen"], finders["unfrozen"]
    print(f"LR finders: frozen guide {frozen['guide']:.3g} (steepest {frozen['steepest']:.3g}); unfrozen "
          f"slice({unfrozen['lower']:.3g}, {unfrozen['upper']:.3g}) (knee {unfrozen['knee']}); "
          f"plots in {exp}", flush=True)
    space = build_space(frozen["guide"], unfrozen["upper"], band=cfg.band, ratios=cfg.ratios,
                        schedules=cfg.schedules, stage1_fracs=cfg.stage1_fracs, pct_start=cfg.pct_start,
                        moms=cfg.moms, wd=tuple(cfg.wd) if cfg.wd else None)

    setup = {"task": cfg.task, "task_config": cfg.task_config, "epochs": cfg.epochs, "n_groups": n_groups,
             "workers_per_trial": cfg.workers_per_trial, "cpus": cpus, "gpus": cfg.gpus_per_trial,
             "seed": cfg.seed, "train_storage": str(exp / "train")}
    trainable = tune.with_resources(tune.with_parameters(sweep_trial, setup=setup), trial_res)
    if tune.Tuner.can_restore(str(exp)):
        print(f"restoring the interrupted sweep {exp}", flush=True)
        tuner = tune.Tuner.restore(str(exp), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        scheduler = (ASHAScheduler(max_t=cfg.epochs, grace_period=cfg.grace_period,
                                   reduction_factor=cfg.reduction_factor) if cfg.scheduler == "asha"
                     else FIFOScheduler())
        search = BasicVariantGenerator(points_to_evaluate=[dict(p) for p in cfg.configs or []] or None,
                                       random_state=cfg.seed, max_concurrent=cfg.max_concurrent)
        tuner = tune.Tuner(
            trainable, param_space=space,
            # the generator caps concurrency. Not reuse_actors: a reused trial's get_trial_dir() (plan.json) stays
            # the previous trial's in Ray 2.60
            tune_config=tune.TuneConfig(metric=metric, mode=mode, num_samples=cfg.trials, scheduler=scheduler,
                                        search_alg=search),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=cfg.verbose,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    grid = tuner.fit()
    return _summarise(grid, cfg, exp, metric, mode, finders)


def _summarise(grid, cfg: SweepConfig, exp: Path, metric: str, mode: str, finders: dict) -> dict:
    import pandas as pd

    rows, exports = [], {}
    for r in grid:
        conf = dict(r.config or {})
        m = dict(r.metrics or {})
        history = r.metrics_dataframe
        epochs_run = int(m.get("training_iteration", 0) or 0)
        best_epoch_value = None
        if history is not None and metric in history:
            vals = history[metric].dropna()
            if len(vals):
                best_epoch_value = float(vals.max() if mode == "max" else vals.min())
        plan = plan_from_config(conf, cfg.epochs) if {"stage1_lr", "upper"} <= set(conf) else []
        status = "error" if r.error else "finished" if epochs_run >= cfg.epochs else "stopped early"
        row = {"trial": m.get("trial_id") or (Path(r.path).name if r.path else ""),
               metric: m.get(metric), f"best_{metric}": best_epoch_value, "epochs": epochs_run, "status": status,
               "stage1_lr": conf.get("stage1_lr"), "upper": conf.get("upper"), "ratio": conf.get("ratio"),
               "schedule": json.dumps(conf.get("schedule")) if isinstance(conf.get("schedule"), list)
               else conf.get("schedule"), "stage1_frac": conf.get("stage1_frac"),
               **{k: conf.get(k) for k in ("pct_start", "moms", "wd") if k in conf},
               "plan": plan_summary(plan), "node_id": m.get("node_id"),
               "path": r.path}
        rows.append(row)
        if status == "finished":
            exports[len(rows) - 1] = _export_of(r)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(metric, ascending=(mode == "min"), na_position="last").reset_index()
    df.drop(columns=["index"], errors="ignore").to_csv(exp / "results.csv", index=False)
    (exp / "results.md").write_text(_markdown(df.drop(columns=["index", "path"], errors="ignore")))
    _plot(df, metric, exp / "metric_vs_lr.png", finders)
    best = None
    for _, row in df.iterrows():
        src = exports.get(int(row["index"]))
        if src is not None and src.is_dir():
            best_dir = exp / "best_export"
            shutil.rmtree(best_dir, ignore_errors=True)
            shutil.copytree(src, best_dir)
            best = {**{k: row[k] for k in df.columns if k not in ("index",)}, "export": str(best_dir)}
            break
    if best is None:
        raise RaylessonsError(f"no trial of {exp.name} finished; see {exp} and the trials' errors")
    return {"name": exp.name, "path": str(exp), "metric": metric, "mode": mode,
            "rows": df.drop(columns=["index"], errors="ignore").to_dict("records"), "best": best,
            "table_csv": str(exp / "results.csv"), "table_md": str(exp / "results.md"),
            "plot": str(exp / "metric_vs_lr.png"), "finders": {k: finders[k]["png"] for k in ("frozen", "unfrozen")},
            "errors": [str(r.error) for r in grid if r.error]}


def _export_of(result) -> Path | None:
    """The export written with a trial's last epoch (in its Tune checkpoint or its Train checkpoint)."""
    from ..distributed.train import EXPORT_DIR

    if result.checkpoint is not None and (Path(result.checkpoint.path) / EXPORT_DIR).is_dir():
        return Path(result.checkpoint.path) / EXPORT_DIR
    ck = (result.metrics or {}).get("checkpoint_path")
    if ck and (Path(ck) / EXPORT_DIR).is_dir():
        return Path(ck) / EXPORT_DIR
    return None


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v)


def _markdown(df) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    short = {"node_id": 8}  # node ids are 56 hex digits: 8 tell them apart in a table
    lines += ["| " + " | ".join(_fmt(row[c])[:short.get(c)] for c in cols) + " |" for _, row in df.iterrows()]
    return "\n".join(lines) + "\n"


def _plot(df, metric: str, path: Path, finders: dict) -> None:
    from ..recorder import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, col, guide, label in ((axes[0], "stage1_lr", finders["frozen"]["guide"], "frozen guide"),
                                  (axes[1], "upper", finders["unfrozen"]["upper"], "unfrozen guide")):
        if not df.empty:
            for status, marker in (("finished", "o"), ("stopped early", "x"), ("error", "s")):
                part = df[df["status"] == status]
                ax.scatter(part[col], part[metric], marker=marker, label=status)
        ax.axvline(guide, linestyle="--", color="gray", label=f"{label} {guide:.2e}")
        ax.set(xscale="log", xlabel=col, ylabel=metric)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # labelled minor ticks overlap on a short log axis
        ax.legend(fontsize=8)
    _save(fig, path)
