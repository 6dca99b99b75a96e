"""Steps/s of a plain PyTorch loop, Learner.fit and Ray Train (1 worker) on the same model and batch.

Run: python bench/train_overhead.py [--steps 40] [--repeats 3]
Prints the steady-state (median step time after warm-up) steps/s of each, measured in this one run
(interleaved repeats, since this VM's speed drifts), the ratios to the plain loop, and the fixed
start-up cost of a Ray Train run.
"""
from __future__ import annotations

import os
import sys

# bench/tokenize.py would shadow the standard library's tokenize module for scripts run from here
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import FixedBatchData, fixed_batch, steady  # noqa: E402

from raylessons.callbacks import Callback  # noqa: E402
from raylessons.learner import AdamW, Learner  # noqa: E402
from raylessons.metrics import BCEWithLogitsFlat  # noqa: E402
from raylessons.models.cnn import create_cnn_model, resnet_split  # noqa: E402

ARCH, THREADS = "resnet34", 2


def plain_loop(steps: int, threads: int = THREADS) -> list[float]:
    """The reference: forward, loss, backward, AdamW step, zero_grad."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_cnn_model(ARCH, 17).train()
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    loss_func = BCEWithLogitsFlat()
    xb, yb = fixed_batch()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return times


class StepTimer(Callback):
    """Time between consecutive batch ends: everything the loop does per step."""

    order = 100

    def before_fit(self, learn):
        self.times, self.last = [], time.perf_counter()

    def after_batch(self, learn):
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def learner_loop(steps: int, threads: int = THREADS) -> list[float]:
    """Learner.fit_one_cycle over the same batch (recorder, scheduler and callbacks included)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    xb, yb = fixed_batch()
    learn = Learner(FixedBatchData(xb, yb, steps), create_cnn_model(ARCH, 17), splitter=resnet_split,
                    device="cpu")
    learn.recorder.verbose = False
    timer = StepTimer()
    learn.fit_one_cycle(1, 1e-3, callbacks=[timer])
    return timer.times


def ray_train_worker(config: dict) -> None:
    times = learner_loop(config["steps"], config["threads"])
    # Train V2 attaches metrics only to checkpoints: hand the step times back through a file
    Path(config["out"]).write_text(json.dumps(times))


def ray_train(steps: int, cpus: float, threads: int) -> tuple[list[float], float, float]:
    """(step times, fit wall seconds, loop seconds) of one TorchTrainer run with 1 worker."""
    import ray.train
    from ray.train.torch import TorchTrainer

    out = Path(tempfile.mkdtemp()) / "times.json"
    t0 = time.perf_counter()
    trainer = TorchTrainer(ray_train_worker,
                           train_loop_config={"steps": steps, "threads": threads, "out": str(out)},
                           scaling_config=ray.train.ScalingConfig(num_workers=1,
                                                                  resources_per_worker={"CPU": cpus}),
                           run_config=ray.train.RunConfig(storage_path="/tmp/raylessons-bench",
                                                          name=f"overhead-{time.time_ns()}"))
    trainer.fit()
    wall = time.perf_counter() - t0
    times = json.loads(out.read_text())
    return times, wall, sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import ray

    from raylessons.distributed.launch import LOCAL_SYSTEM_CONFIG

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.0")  # as fit_plan sets it
    bench_dir = str(Path(__file__).resolve().parents[1])  # workers import bench._common from here
    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": bench_dir}}, _system_config=LOCAL_SYSTEM_CONFIG)
    cpus = float(ray.cluster_resources()["CPU"])
    res = {"plain": [], "learner": [], "ray": [], "ray_defaults": []}
    fixed = []
    for r in range(args.repeats):  # interleaved: drifts of this VM hit every contender alike
        res["plain"].append(1 / steady(plain_loop(args.steps)))
        res["learner"].append(1 / steady(learner_loop(args.steps)))
        times, wall, loop = ray_train(args.steps, cpus, THREADS)
        res["ray"].append(1 / steady(times))
        fixed.append(wall - loop)
        if r == 0:
            times, _, _ = ray_train(args.steps, 1, 1)  # Ray's defaults: 1 CPU, 1 thread
            res["ray_defaults"].append(1 / steady(times))
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in res.items() if v), flush=True)
    ray.shutdown()
    med = {k: statistics.median(v) for k, v in res.items() if v}
    # this VM's speed drifts by minutes: a ratio within one repeat is steadier than a ratio of medians
    ratio = {k: statistics.median(a / b for a, b in zip(v, res["plain"])) for k, v in res.items() if v}
    print(f"\n{ARCH}, 64 px, batch 32, CPU, {THREADS} torch threads; steps/s = 1 / median step time "
          f"after 5 warm-up steps; median of {args.repeats} interleaved repeats; 'vs plain' = median over "
          "repeats of (steps/s / plain steps/s of the same repeat)")
    print(f"{'loop':<44}{'steps/s':>9}{'vs plain':>10}")
    names = {"plain": "plain PyTorch", "learner": "Learner.fit_one_cycle",
             "ray": f"Ray Train, 1 worker ({cpus:g} CPU, {THREADS} threads)",
             "ray_defaults": "Ray Train, Ray defaults (1 CPU, 1 thread)"}
    for k, v in med.items():
        print(f"{names[k]:<44}{v:>9.2f}{ratio[k]:>9.2f}x")
    print(f"Ray Train fixed start-up cost per run (fit wall - loop time): median {statistics.median(fixed):.1f} s")


if __name__ == "__main__":
    main()
