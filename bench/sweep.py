"""The same 8 plans swept with ASHA and without early stopping (FIFO), in one run: wall-time ratio and best metrics.

Run: python bench/sweep.py [--n 400] [--epochs 12] [--plans 8] [--max-concurrent 2] [--grace-period 1]
                           [--reduction-factor 2]
The LR finders run once; both sweeps get the same finder results and the same 8 trial configs (sampled once
from the finder-guided space with a fixed seed), so the two runs differ only in their scheduler.
Target: ASHA takes <= 0.5x the time of the full sweep and its best metric is within 2 % of the full sweep's.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=400, help="generated Planet images")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=12, help="epoch budget of every plan (ASHA's max_t)")
    ap.add_argument("--plans", type=int, default=8)
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before the first cut")
    ap.add_argument("--reduction-factor", type=int, default=2, help="ASHA: keep the top 1/rf at each rung")
    ap.add_argument("--out", default=None, help="working directory (default: a temporary one)")
    args = ap.parse_args(argv)

    import ray

    from raylessons.cluster import init_ray
    from raylessons.data.synth import synth
    from raylessons.sweep import SweepConfig, experiment_name, run_sweep
    from raylessons.sweep.finder import FINDERS_FILE, run_finders
    from raylessons.sweep.space import build_space

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-sweep-"))
    data = out / "planet"
    if not (data / "train_v2.csv").is_file():
        synth("planet", data, n=args.n, size=64, seed=0)
    task_config = {"data": str(data), "size": args.size, "bs": 32, "arch": "resnet18"}
    init_ray()
    cpus = max(1.0, float(int(ray.cluster_resources().get("CPU", 1) // args.max_concurrent)))
    t0 = time.perf_counter()
    finders = run_finders("planet", task_config, out / "finders", cpus=cpus)
    t_find = time.perf_counter() - t0
    space = build_space(finders["frozen"]["guide"], finders["unfrozen"]["upper"], band=4.0, ratios=(10.0, 100.0),
                        stage1_fracs=(0.25, 0.5))
    rng = np.random.RandomState(0)
    plans = [{k: (v.sample(random_state=rng) if hasattr(v, "sample") else v) for k, v in space.items()}
             for _ in range(args.plans)]
    print(f"finders: {t_find:.0f} s; frozen guide {finders['frozen']['guide']:.3g}, unfrozen upper "
          f"{finders['unfrozen']['upper']:.3g}\nplans:", json.dumps(plans, indent=None), flush=True)

    results = {}
    for scheduler in ("asha", "fifo"):
        cfg = SweepConfig(task="planet", task_config=task_config, trials=len(plans), max_concurrent=args.max_concurrent,
                          scheduler=scheduler, epochs=args.epochs, configs=plans, storage_path=str(out / "runs"),
                          grace_period=args.grace_period, reduction_factor=args.reduction_factor, verbose=0,
                          lesson_first=False)
        exp = out / "runs" / experiment_name(cfg)
        shutil.rmtree(exp, ignore_errors=True)
        exp.mkdir(parents=True)
        shutil.copy(out / "finders" / FINDERS_FILE, exp / FINDERS_FILE)  # same finders, not timed twice
        t0 = time.perf_counter()
        res = run_sweep(cfg)
        wall = time.perf_counter() - t0
        epochs = sum(r["epochs"] for r in res["rows"])
        results[scheduler] = {"wall_s": wall, "best": res["best"][res["metric"]], "epochs_run": epochs,
                              "stopped_early": sum(r["status"] == "stopped early" for r in res["rows"])}
        print(f"{scheduler}: {wall:.0f} s, {epochs} epochs run, best {res['metric']} {results[scheduler]['best']:.4f}",
              flush=True)
    a, f = results["asha"], results["fifo"]
    ratio, gap = a["wall_s"] / f["wall_s"], (f["best"] - a["best"]) / f["best"]
    print(json.dumps({"asha": a, "fifo": f, "time_ratio_asha_over_fifo": round(ratio, 3),
                      "best_metric_gap": round(gap, 4)}, indent=2))
    print(f"ASHA / no early stopping wall time: {ratio:.2f}x (target <= 0.5); best fbeta ASHA {a['best']:.4f} vs "
          f"full {f['best']:.4f}: {100 * gap:+.2f} % below (target <= 2 %)")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
