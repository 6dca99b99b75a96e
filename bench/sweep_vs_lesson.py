"""Does the sweep beat the lesson's own plan? Per task: the lesson's plan and an ASHA sweep with the same epoch budget
per trial, the sweep's best trial selected on the validation metric, then both models scored on a held-out test
split that neither training nor selection saw (`test_pct`). Repeated over seeds, in one run.

Run: python bench/sweep_vs_lesson.py [--tasks planet,camvid,head_pose,imdb_clas] [--seeds 0,1] [--trials 5]
                                     [--search qmc] [--fifo-seeds 1] [--out DIR]

- lesson: the task's `lesson` plan at one image size (the stages before its first resize), its epochs scaled to
  the budget, its rates as the notebook has them; run in this process by the same worker code as a trial
  (`fit_plan` with num_workers=0), seeded like the sweep.
- sweep: `run_sweep` with the task's preset space (the LR finders, then `--trials` trials under ASHA, drawn as
  `--search` says: by default `qmc`, a scrambled Sobol sequence), the same data, seed and epoch budget; its
  `best_export` is the model selected on validation.
- compute: epochs trained, counting each LR finder's batches as a share of an epoch and the unfrozen finder's
  warm-up epoch; sweep compute / lesson compute.
- ASHA / full sweep: for the first `--fifo-seeds` seeds the same trials (same finders, same sampled configs) also
  run under FIFO, and the wall times are compared (the trials' time: the finders, run once, are left out).
Target (issue 17): sweep-selected test metric >= the lesson's on every task and better by more than the seeds'
spread on at least two, at <= 6x the lesson plan's compute with ASHA.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# per task: the look-alike data, the task options, the epoch budget of the lesson plan and of every trial, and the
# share held out as the test set (default: --test-pct). Planet and CamVid hold out half of a larger look-alike:
# about as many items to train and select on as with 800 and 100 items at 0.2 (502 + 134 against 532 + 134, and
# 62 + 18 against 60 + 17), and 644 and 80 test items against 134 and 23. With those few, one seed's test score
# moved about as much as the sweep's gain (lesson spreads of 0.009 and 0.010 against gains of 0.008).
SETUPS = {
    "planet": dict(synth=dict(n=1280, size=64), config=dict(size=32, bs=32, arch="resnet18"), epochs=6,
                   finder_iters=40, test_pct=0.5),
    "camvid": dict(synth=dict(n=160, size=(96, 128)), config=dict(size=[48, 64], bs=8, arch="resnet18"),
                   epochs=6, finder_iters=20, test_pct=0.5),
    "head_pose": dict(synth=dict(frames=30, size=(120, 160)),
                      config=dict(size=[48, 64], bs=16, arch="resnet18", ps=0.0,
                                  tfms={"max_warp": 0.0, "max_rotate": 0.0}), epochs=6, finder_iters=40),
    # ULMFiT's classifier after a small LM (pretrained on a generated corpus, fine-tuned on the reviews)
    "imdb_clas": dict(synth=dict(n_train=1000, n_test=500, n_unsup=300, n_sample=0),
                      config=dict(bs=32, drop_mult=0.1), epochs=5, finder_iters=40),
}
DATASETS = {"planet": "planet", "camvid": "camvid", "head_pose": "biwi", "imdb_clas": "imdb"}
LM_MODEL = {"emb_sz": 64, "n_hid": 128, "n_layers": 2}


def prepare_data(name: str, root: Path, test_pct: float) -> dict:
    """The task's generated data (and for the classifier, its language model); the task options."""
    from raylessons.data.synth import synth

    setup = SETUPS[name]
    data = root / "data" / name
    if not data.is_dir():
        synth(DATASETS[name], data, seed=0, **setup["synth"])
    options = {"data": str(data), "test_pct": test_pct, **setup["config"]}
    if name == "imdb_clas":
        options["lm_export"] = str(language_model(data, root, test_pct))
    return options


def language_model(data: Path, root: Path, test_pct: float) -> Path:
    """A small AWD-LSTM LM: pretrained on a generated corpus, fine-tuned on the reviews (test reviews held out)."""
    from raylessons.data.synth.imdb import synth_corpus
    from raylessons.distributed.pretrain import pretrain_plan
    from raylessons.distributed.train import TrainRun, fit_plan
    from raylessons.tasks.imdb_lm import MOMS

    runs = root / "lm"
    export = runs / "imdb-lm" / "export"
    if (export / "meta.json").is_file():
        return export
    corpus = synth_corpus(root / "data" / "corpus", n_docs=1000, seed=0)
    pre = fit_plan(TrainRun(task="imdb_lm", plan=pretrain_plan(2, 1e-2), name="corpus-lm", storage_path=str(runs),
                            task_config={"data": str(corpus), "include": [], "bs": 64, "min_freq": 2,
                                         "model": LM_MODEL}, num_workers=0))
    lm = fit_plan(TrainRun(task="imdb_lm", name="imdb-lm", storage_path=str(runs), num_workers=0,
                           plan=[{"freeze": True, "epochs": 1, "max_lr": 1e-2, "moms": MOMS},
                                 {"unfreeze": True, "epochs": 2, "max_lr": 3e-3, "moms": MOMS}],
                           task_config={"data": str(data), "bs": 64, "model": LM_MODEL, "pretrained": pre["export"],
                                        "test_pct": test_pct}))
    return Path(lm["export"])


def run_lesson(name: str, options: dict, plan: list, seed: int, root: Path) -> dict:
    from raylessons.distributed.train import TrainRun, fit_plan

    run_name = f"lesson-{name}-{seed}"
    shutil.rmtree(root / "lessons" / run_name, ignore_errors=True)
    t0 = time.perf_counter()
    result = fit_plan(TrainRun(task=name, plan=plan, task_config=options, name=run_name,
                               storage_path=str(root / "lessons"), num_workers=0, seed=seed))
    return {"export": result["export"], "valid": result["metrics"], "wall_s": time.perf_counter() - t0}


def run_one_sweep(name: str, options: dict, budget: int, seed: int, args, root: Path, scheduler: str,
                  finders_from: Path | None = None) -> dict:
    from raylessons.sweep import SweepConfig, experiment_name, run_sweep
    from raylessons.sweep.finder import FINDERS_FILE

    cfg = SweepConfig(task=name, task_config=options, trials=args.trials, max_concurrent=args.max_concurrent,
                      scheduler=scheduler, search=args.search, epochs=budget,
                      reduction_factor=args.reduction_factor, seed=seed,
                      finder_iters=args.finder_iters or SETUPS[name]["finder_iters"],
                      storage_path=str(root / "sweeps"), verbose=0)
    exp = root / "sweeps" / experiment_name(cfg)
    shutil.rmtree(exp, ignore_errors=True)
    if finders_from is not None:  # the same finders (and so the same sampled trials), not run or timed twice
        exp.mkdir(parents=True)
        shutil.copy(finders_from / FINDERS_FILE, exp / FINDERS_FILE)
    t0 = time.perf_counter()
    result = run_sweep(cfg)
    result["wall_s"] = time.perf_counter() - t0
    result["config"] = dataclasses.asdict(cfg)
    return result


def prune(run_dir: str | Path) -> None:
    """Drop a scored run's or sweep's checkpoints (a few GB per task over all seeds); exports and tables stay."""
    for ckpt in [*Path(run_dir).rglob("checkpoint_*")]:
        if ckpt.is_dir():
            shutil.rmtree(ckpt, ignore_errors=True)


def finder_epochs(finders: dict, batches_per_epoch: int, warmup_epochs: int) -> float:
    """The finders' cost in epochs: their batches over an epoch's, plus the unfrozen finder's frozen warm-up."""
    return (len(finders["frozen"]["lrs"]) + len(finders["unfrozen"]["lrs"])) / batches_per_epoch + warmup_epochs


def spread(values: list[float]) -> float:
    return max(values) - min(values) if len(values) > 1 else 0.0


def main(argv=None) -> int:
    from raylessons.sweep.config import SEARCHERS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(SETUPS), help="comma-separated tasks")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds (>= 2 for a spread)")
    # 5: each trial costs close to the whole budget (ASHA's first cut waits until every plan anneals), and the
    # finders about one more, so 5 trials stay within the target of 6x the lesson plan's compute
    ap.add_argument("--trials", type=int, default=5, help="trials per sweep, the lesson's own plan first")
    # 4 drawn trials: a Sobol sequence takes one rate from each quarter of each band, where random draws can all
    # land in one decade (run 9 of the closing notes: seed 3's IMDB and head pose draws all fell below the good rates)
    ap.add_argument("--search", default="qmc", choices=SEARCHERS, help="how trials are drawn")
    ap.add_argument("--reduction-factor", type=int, default=3, help="ASHA: keep the top 1/rf at each rung")
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--finder-iters", type=int, default=None,
                    help="batches of each LR finder (default: the task's in SETUPS)")
    ap.add_argument("--test-pct", type=float, default=None,
                    help="share of every task's items held out as test (default: the task's in SETUPS, else 0.2)")
    ap.add_argument("--fifo-seeds", type=int, default=1, help="seeds whose trials also run under FIFO (0: none)")
    ap.add_argument("--out", default=None, help="working directory (default: a temporary one)")
    args = ap.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    unknown = sorted(set(tasks) - set(SETUPS))
    if unknown:
        ap.error(f"unknown tasks {unknown}; choose from {', '.join(SETUPS)}")

    import ray

    from raylessons.cluster import init_ray
    from raylessons.tasks import get_task

    root = Path(args.out or tempfile.mkdtemp(prefix="bench-sweep-vs-lesson-"))
    root.mkdir(parents=True, exist_ok=True)
    init_ray(log_dir=root)
    t_start = time.perf_counter()
    out_rows, details = [], {}
    for name in tasks:
        task = get_task(name)
        test_pct = args.test_pct if args.test_pct is not None else SETUPS[name].get("test_pct", 0.2)
        options = prepare_data(name, root, test_pct)
        budget = SETUPS[name]["epochs"]
        plan = task.first_size_plan(budget)
        key = task.test_key()
        learn = task.learner(options, device="cpu")
        n_train, n_valid, n_test = (len(learn.data.train_ds), len(learn.data.valid_ds),
                                    len(task.test_data(options).valid_ds))
        batches = len(learn.data.train_dl)
        print(f"\n== {name}: {n_train} train / {n_valid} valid / {n_test} test items; budget {budget} epochs; "
              f"lesson plan {json.dumps(plan)}", flush=True)
        per_seed = []
        for i, seed in enumerate(seeds):
            lesson = run_lesson(name, options, plan, seed, root)
            lesson["test"] = task.evaluate(options, lesson["export"])
            asha = run_one_sweep(name, options, budget, seed, args, root, "asha")
            best = asha["best"]
            sweep_test = task.evaluate(options, best["export"])
            epochs = sum(r["epochs"] for r in asha["rows"])
            finders = json.loads((Path(asha["path"]) / "finders.json").read_text())
            compute = (epochs + finder_epochs(finders, batches, asha["config"]["warmup_epochs"])) / budget
            asha["wall_s"] -= finders["wall_s"]  # the FIFO sweep reuses them: compare the trials' time alone
            row = {"seed": seed, "lesson_valid": lesson["valid"][task.metric], "lesson_test": lesson["test"][key],
                   "sweep_valid": best[task.metric], "sweep_test": sweep_test[key], "sweep_plan": best["plan"],
                   "trial_epochs": epochs, "compute_x": compute, "lesson_wall_s": lesson["wall_s"],
                   "asha_wall_s": asha["wall_s"], "sweep_table": asha["table_md"],
                   "finders": asha["finders"], "stopped_early": sum(r["status"] == "stopped early"
                                                                    for r in asha["rows"])}
            if i < args.fifo_seeds:
                fifo = run_one_sweep(name, options, budget, seed, args, root, "fifo", finders_from=Path(asha["path"]))
                row["fifo_wall_s"] = fifo["wall_s"]
                row["fifo_best_test"] = task.evaluate(options, fifo["best"]["export"])[key]
            print(f"{name} seed {seed}: lesson {task.metric} valid {row['lesson_valid']:.4f} test "
                  f"{row['lesson_test']:.4f} | sweep best valid {row['sweep_valid']:.4f} test {row['sweep_test']:.4f} "
                  f"({row['sweep_plan']}) | compute {compute:.2f}x | ASHA {row['asha_wall_s']:.0f} s"
                  + (f", FIFO {row['fifo_wall_s']:.0f} s" if "fifo_wall_s" in row else ""), flush=True)
            print(Path(asha["table_md"]).read_text(), flush=True)
            for path in (asha["path"], fifo["path"] if "fifo_wall_s" in row else None,
                         root / "lessons" / f"lesson-{name}-{seed}"):
                if path is not None:
                    prune(path)
            per_seed.append(row)
        lesson_t, sweep_t = [r["lesson_test"] for r in per_seed], [r["sweep_test"] for r in per_seed]
        sign = 1 if task.mode == "max" else -1
        diff = sign * (statistics.mean(sweep_t) - statistics.mean(lesson_t))
        fifo_rows = [r for r in per_seed if "fifo_wall_s" in r]
        out_rows.append({
            "task": name, "metric": f"{task.metric} ({task.mode})", "lesson_test": lesson_t, "sweep_test": sweep_t,
            "lesson_test_mean": statistics.mean(lesson_t),
            "lesson_test_spread": spread(lesson_t), "sweep_test_mean": statistics.mean(sweep_t),
            "sweep_test_spread": spread(sweep_t), "better_by": diff,
            "beats_spread": diff > max(spread(lesson_t), spread(sweep_t)),
            "compute_x": statistics.mean(r["compute_x"] for r in per_seed),
            "asha_over_full": (statistics.mean(r["asha_wall_s"] for r in fifo_rows)
                               / statistics.mean(r["fifo_wall_s"] for r in fifo_rows)) if fifo_rows else None})
        details[name] = {"items": [n_train, n_valid, n_test], "budget": budget, "lesson_plan": plan,
                         "seeds": per_seed}
    (root / "sweep_vs_lesson.json").write_text(json.dumps({"rows": out_rows, "details": details}, indent=1,
                                                          default=str))
    print(f"\nall done in {time.perf_counter() - t_start:.0f} s; details in {root / 'sweep_vs_lesson.json'}\n")
    print(f"test metric: the mean over seeds {seeds} (each seed's value); spread = max - min over seeds; compute = "
          "epochs trained by the sweep (finders included) / the lesson plan's")
    print("| task | metric | lesson test | sweep-selected test | sweep - lesson (better: +) | > both spreads | "
          "sweep compute / lesson | ASHA wall / full sweep |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out_rows:
        ratio = f"{r['asha_over_full']:.2f}x" if r["asha_over_full"] is not None else "-"
        each = {k: ", ".join(f"{v:.4f}" for v in r[k]) for k in ("lesson_test", "sweep_test")}
        print(f"| {r['task']} | {r['metric']} | {r['lesson_test_mean']:.4f} ({each['lesson_test']}) | "
              f"{r['sweep_test_mean']:.4f} ({each['sweep_test']}) | {r['better_by']:+.4f} | "
              f"{'yes' if r['beats_spread'] else 'no'} | {r['compute_x']:.2f}x | {ratio} |")
    not_worse = sum(r["better_by"] >= 0 for r in out_rows)
    clear = sum(r["beats_spread"] for r in out_rows)
    cheap = all(r["compute_x"] <= 6 for r in out_rows)
    print(f"\nsweep >= lesson on {not_worse}/{len(out_rows)} tasks (target: all); better by more than the spread on "
          f"{clear} (target >= 2); compute <= 6x on every task: {'yes' if cheap else 'no'}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
