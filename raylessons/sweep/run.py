"""A Ray Tune sweep of learning-rate bands and unfreezing schedules, guided by the LR finders.

    run_sweep(SweepConfig(task="planet", task_config={...}, trials=8, max_concurrent=2, scheduler="asha"))

1. Every option is checked and the search space built once with placeholder guides (`config.check_sweep`: an
   empty space, an unknown schedule or scheduler fail here, before Ray starts).
   The task's learner is built once here (CPU, no training) to check the schedules against its layer groups
   and the metric against what it reports.
2. The two LR finders run as Ray tasks (`finder.run_finders`); their PNGs and curves are stored in the
   experiment directory.
3. A `Tuner` runs the trials (`trial.sweep_trial`): the lesson's own plan first (`lesson_first`), then explicit
   `configs`, then trials drawn from the space (at random; by Optuna's TPE with `search="optuna"`; or from a
   scrambled Sobol sequence with `search="qmc"`, so that a few draws cover each band and choice evenly). Each turns
   its config into a plan (`space.plan_from_config`, written as `plan.json` in the trial directory) and runs it,
   reporting the task metric every epoch, in the trial itself (1 worker) or on a TorchTrainer with
   `workers_per_trial` DDP workers. ASHA (or FIFO) decides; ASHA's first cut waits until every plan anneals
   (`config.default_grace_period`).
   Tune's loggers write each trial's reports as CSV, JSON and TensorBoard event files in its directory.
   The experiment name is a hash of the sweep's options, so running the same sweep again after a crash
   restores it with `Tuner.restore` (finished trials are kept, unfinished ones resumed from their last epoch).
4. Results (`report.summarise`): `results.csv` and `results.md` (sorted by the metric), `metric_vs_lr.png`, and
   the best finished trial's export copied to `best_export/` (what `raylessons serve --export task=DIR` takes).

With `storage_path` a URI (s3://bucket/prefix) the experiment lives in the bucket: Tune writes its trials and
checkpoints there (trial directories synced as artifacts), DDP trials' Train runs go to `<experiment>/train`, and
the driver's own files (sweep.json, the finders, the results, best_export/) are written in a local mirror
(`storage.local_mirror`) and uploaded when the sweep ends.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from .. import storage
from ..cluster import init_ray
from ..errors import ConfigError
from ..tasks import get_task
from .config import OPTUNA_SEARCHERS, SweepConfig, check_sweep, experiment_name
from .finder import FINDERS_FILE, run_finders
from .report import summarise
from .space import build_space, check_schedule, plan_from_config
from .trial import TrialSetup, sweep_trial

__all__ = ["first_trials", "run_sweep", "trial_resources"]


def _model_facts(cfg: SweepConfig) -> tuple[int, list[str]]:
    """(layer groups of the task's model, the metrics its epochs report), from a learner built here on the CPU."""
    learn = get_task(cfg.task).learner(cfg.task_config, device="cpu")
    return len(learn.layer_groups), ["train_loss", "valid_loss", *learn.metric_names]


def trial_resources(cfg: SweepConfig, cluster_cpus: float) -> tuple[dict, float]:
    """(a trial's Tune resources, CPUs per worker)."""
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


def _check_on_the_model(cfg: SweepConfig, metric: str) -> int:
    """The model's layer groups, once the metric and every schedule and trial config are checked against it."""
    n_groups, reported = _model_facts(cfg)  # bad data, metric or schedule: fail before Ray starts
    if metric not in reported:
        raise ConfigError(f"the {cfg.task} task does not report {metric!r}; it reports {', '.join(reported)}")
    for s in cfg.schedules:
        check_schedule(s, n_groups, f"the {cfg.task} model")
    for point in ([get_task(cfg.task).lesson_trial] if cfg.lesson_first else []) + list(cfg.configs or []):
        if point:
            plan_from_config(point, cfg.epochs, n_groups)
    return n_groups


def run_sweep(cfg: SweepConfig) -> dict:
    """Run (or restore) the sweep; returns the table rows, the best trial and the paths of what was written."""
    import ray
    from ray import tune

    metric, mode = check_sweep(cfg)
    # every epoch checkpoints (resume, ASHA pauses); Tune would warn about the forced state snapshots each time
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    n_groups = _check_on_the_model(cfg, metric)
    name = cfg.name or experiment_name(cfg)
    where = storage.join(cfg.storage_path, name) if storage.is_uri(cfg.storage_path) else None  # in a bucket
    root = Path(cfg.storage_path).expanduser().resolve() if where is None else storage.normalize(cfg.storage_path)
    exp = root / name if where is None else storage.local_mirror(where)
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "sweep.json").write_text(json.dumps({**dataclasses.asdict(cfg), "name": name}, indent=1, default=str))
    if where is not None:  # an unreachable bucket fails here, before Ray starts; a restored sweep's finders back
        storage.upload(exp / "sweep.json", storage.join(where, "sweep.json"))
        if not (exp / FINDERS_FILE).exists() and storage.exists(storage.join(where, FINDERS_FILE)):
            storage.download(storage.join(where, FINDERS_FILE), exp / FINDERS_FILE)
    init_ray(log_dir=exp)  # quiet unless RAYLESSONS_VERBOSE: Ray's lines go to exp/ray.log
    trial_res, cpus = trial_resources(cfg, ray.cluster_resources().get("CPU", 1))

    finders = run_finders(cfg.task, cfg.task_config, exp, cpus=cpus, gpus=min(cfg.gpus_per_trial, 1),
                          warmup_epochs=cfg.warmup_epochs, divisor=cfg.divisor, seed=cfg.seed,
                          num_it=cfg.finder_iters, clamp=tuple(cfg.guide_clamp))
    frozen, unfrozen = finders["frozen"], finders["unfrozen"]
    print(f"{finders_line(frozen, unfrozen, cfg.guide_clamp)}; plots in {exp}", flush=True)
    lesson = get_task(cfg.task).lesson_trial if cfg.lesson_first else None
    space = build_space(frozen["guide"], unfrozen["upper"], band=cfg.band, ratios=cfg.ratios,
                        schedules=cfg.schedules, stage1_fracs=cfg.stage1_fracs, pct_start=cfg.pct_start,
                        moms=cfg.moms, wd=tuple(cfg.wd) if cfg.wd else None, lesson=lesson)
    setup = TrialSetup(task=cfg.task, task_config=cfg.task_config, epochs=cfg.epochs, n_groups=n_groups,
                       workers_per_trial=cfg.workers_per_trial, cpus=cpus, gpus=cfg.gpus_per_trial, seed=cfg.seed,
                       train_storage=storage.join(where or exp, "train"), max_failures=cfg.max_failures)
    trainable = tune.with_resources(tune.with_parameters(sweep_trial, setup=setup), trial_res)
    fs = {"storage_filesystem": storage.filesystem(where)} if where else {}
    exp_path = storage.fs_path(where) if where else str(exp)
    if tune.Tuner.can_restore(exp_path, **fs):
        print(f"restoring the interrupted sweep {where or exp}", flush=True)
        tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True, resume_errored=True, **fs)
    else:
        tuner = _tuner(cfg, trainable, space, name, root, metric, mode, first_trials(cfg))
    result = summarise(tuner.fit(), cfg, exp, metric, mode, finders, where)
    if where is not None:
        _upload_results(exp, where, result)
    return result


def _upload_results(exp: Path, where: str, result: dict) -> None:
    """The driver's files of a sweep in a bucket (its regular files and best_export/) uploaded from the local
    mirror; the result then names the bucket's copies (`path`, the best export) and the mirror (`local`)."""
    for f in sorted(exp.iterdir()):
        if f.is_file() and not f.is_symlink():
            storage.upload(f, storage.join(where, f.name))
    storage.delete(storage.join(where, "best_export"))
    storage.upload(exp / "best_export", storage.join(where, "best_export"))
    result.update(path=where, local=str(exp))
    result["best"]["export"] = storage.join(where, "best_export")


def finders_line(frozen: dict, unfrozen: dict, clamp) -> str:
    """'LR finders: frozen guide 0.03 (steepest 0.251, clamped to [0.0001, 0.03]); unfrozen slice(...) (knee ...)':
    which rule gave the frozen guide, and whether the clamp moved it."""
    steepest = frozen.get("rule", "steepest") == "steepest"
    how = f"steepest {frozen['steepest']:.3g}" if steepest else f"flat curve: knee {frozen['knee']:.3g} / 10"
    raw = frozen["steepest"] if steepest else frozen["knee"] / 10
    if not math.isclose(raw, frozen["guide"], rel_tol=1e-6):
        how += f", clamped to [{clamp[0]:.3g}, {clamp[1]:.3g}]"
    knee = f"knee {unfrozen['knee']:.3g}" if unfrozen.get("knee") is not None else "no knee: the loss never shot up"
    return (f"LR finders: frozen guide {frozen['guide']:.3g} ({how}); unfrozen "
            f"slice({unfrozen['lower']:.3g}, {unfrozen['upper']:.3g}) ({knee})")


def first_trials(cfg: SweepConfig) -> list[dict]:
    """The trials run before any is drawn: the lesson's plan (`lesson_first`, the task's `lesson_trial`), then the
    explicit `configs`, each whole: a value the space holds constant (head pose's preset draws only `all`, while
    the lesson trains the head alone) is the point's own in its trial."""
    points = [dict(get_task(cfg.task).lesson_trial)] if cfg.lesson_first and get_task(cfg.task).lesson_trial else []
    return points + [dict(p) for p in cfg.configs or []]


def _tuner(cfg: SweepConfig, trainable, space: dict, name: str, root: Path | str, metric: str, mode: str,
           points: list[dict]):
    """A new Tuner: ASHA (or FIFO) over `space`, explicit `configs` first, `max_concurrent` trials at a time."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    scheduler = (ASHAScheduler(max_t=cfg.epochs, grace_period=cfg.grace_period,
                               reduction_factor=cfg.reduction_factor) if cfg.scheduler == "asha"
                 else FIFOScheduler())
    remote = storage.is_uri(root)  # a bucket: trials' files (plan.json, epochs, TensorBoard) synced there too
    return tune.Tuner(
        trainable, param_space=space,
        # not reuse_actors: a reused trial's get_trial_dir() (plan.json) stays the previous trial's in Ray 2.60
        tune_config=tune.TuneConfig(metric=metric, mode=mode, num_samples=cfg.trials, scheduler=scheduler,
                                    search_alg=_searcher(cfg, points)),
        run_config=tune.RunConfig(name=name, storage_path=storage.fs_path(root) if remote else str(root),
                                  storage_filesystem=storage.filesystem(root) if remote else None,
                                  sync_config=tune.SyncConfig(sync_artifacts=remote), verbose=cfg.verbose,
                                  failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))


def _searcher(cfg: SweepConfig, points: list[dict]):
    """Tune's random sampling (seeded); Optuna's TPE seeded the same way; or Optuna's QMCSampler on a scrambled
    Sobol sequence (seeded): its first 2^k draws fall one in each 2^-k of every dimension, so 4 draws take a rate
    from each quarter of each band and each of two choices twice, where 4 random draws can all land in one
    corner. Each caps the trials in flight and runs `points` first."""
    points = points or None
    if cfg.search in OPTUNA_SEARCHERS:
        from ray.tune.search import ConcurrencyLimiter

        from .whole_points import WholePointsOptuna

        if cfg.search == "qmc":
            import warnings

            import optuna

            with warnings.catch_warnings():  # "QMCSampler is experimental": it has been since Optuna 3.0
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=cfg.seed,
                                                     warn_independent_sampling=False)
            searcher = WholePointsOptuna(points, sampler=sampler)
        else:
            searcher = WholePointsOptuna(points, seed=cfg.seed)
        return ConcurrencyLimiter(searcher, max_concurrent=cfg.max_concurrent)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=points, random_state=cfg.seed, max_concurrent=cfg.max_concurrent)
