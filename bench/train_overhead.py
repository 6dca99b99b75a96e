"""Steps/s of a plain PyTorch loop, Learner.fit and Ray Train (1 worker) on the same model and batch.

Run: python bench/train_overhead.py [--phases 6] [--steps 6]
This VM's speed drifts by 20-300 % over minutes, so the three loops run in alternating *phases*:
in each phase the plain loop, then Learner.fit, then the Ray Train worker (which waits, paused,
between its phases) each take `--steps` steps. Ratios are taken within a phase, then the median
over phases is printed, with the fixed start-up cost of a Ray Train run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
from _common import FixedBatchData, fixed_batch  # bench/_common.py, beside this script

from raylessons.callbacks import Callback
from raylessons.learner import AdamW, Learner
from raylessons.metrics import BCEWithLogitsFlat
from raylessons.models.cnn import create_cnn_model, resnet_split

ARCH, THREADS, WARMUP = "resnet34", 2, 4


class PlainLoop:
    """The reference: forward, loss, backward, AdamW step, zero_grad."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = create_cnn_model(ARCH, 17).train()
        self.opt = AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-2)
        self.loss_func = BCEWithLogitsFlat()
        self.xb, self.yb = fixed_batch()

    def run(self, steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            loss = self.loss_func(self.model(self.xb), self.yb)
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t)
        return times


class PhasedTimer(Callback):
    """Times each step (batch end to batch end); optionally pauses between phases at a file gate."""

    order = 100

    def __init__(self, steps: int, gate: Path | None = None):
        self.steps, self.gate, self.times, self.phase = steps, gate, [], 0

    def before_fit(self, learn):
        self.last = time.perf_counter()

    def after_batch(self, learn):
        now = time.perf_counter()
        self.times.append(now - self.last)
        if self.gate is not None and len(self.times) >= WARMUP and (len(self.times) - WARMUP) % self.steps == 0:
            (self.gate / f"done_{self.phase}").touch()
            self.phase += 1
            while not (self.gate / f"go_{self.phase}").exists() and not (self.gate / "stop").exists():
                time.sleep(0.02)
            now = time.perf_counter()  # the pause is not a step
        self.last = now


def make_learner(steps: int) -> Learner:
    torch.manual_seed(0)
    xb, yb = fixed_batch()
    learn = Learner(FixedBatchData(xb, yb, steps), create_cnn_model(ARCH, 17), splitter=resnet_split,
                    device="cpu")
    learn.recorder.verbose = False
    return learn


def ray_worker(config: dict) -> None:
    torch.set_num_threads(config["threads"])
    timer = PhasedTimer(config["steps"], Path(config["gate"]) if config["gate"] else None)
    make_learner(WARMUP + config["steps"] * config["phases"]).fit_one_cycle(1, 1e-3, callbacks=[timer])
    Path(config["out"]).write_text(json.dumps(timer.times))  # Train V2 keeps metrics only with checkpoints


def start_ray_train(config: dict, cpus: float):
    import ray.train
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(ray_worker, train_loop_config=config,
                           scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": cpus}),
                           run_config=ray.train.RunConfig(storage_path="/tmp/raylessons-bench",
                                                          name=f"overhead-{time.time_ns()}"))
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("t", (trainer.fit(), time.perf_counter())), daemon=True)
    box["start"] = time.perf_counter()
    t.start()
    return t, box


def wait_for(path: Path, timeout: float = 600) -> None:
    end = time.time() + timeout
    while not path.exists():
        if time.time() > end:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phases", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    import ray

    from raylessons.cluster import LOCAL_SYSTEM_CONFIG

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.0")  # as fit_plan sets it
    ray.init(address="local", include_dashboard=False, log_to_driver=False, _system_config=LOCAL_SYSTEM_CONFIG,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    torch.set_num_threads(THREADS)
    cpus = float(ray.cluster_resources()["CPU"])
    gate = Path(tempfile.mkdtemp())
    cfg = {"steps": args.steps, "phases": args.phases, "threads": THREADS, "gate": str(gate),
           "out": str(gate / "ray.json")}
    thread, box = start_ray_train(cfg, cpus)
    wait_for(gate / "done_0")  # the worker is up and warmed; it pauses here
    entered = time.perf_counter() - box["start"]
    plain, learn = PlainLoop(), make_learner(args.steps)
    plain.run(WARMUP)
    per_phase = []
    for p in range(args.phases):
        pt = statistics.median(plain.run(args.steps))
        timer = PhasedTimer(args.steps)
        learn.fit_one_cycle(1, 1e-3, callbacks=[timer])
        lt = statistics.median(timer.times[1:])
        (gate / f"go_{p + 1}").touch()
        wait_for(gate / f"done_{p + 1}")
        per_phase.append((pt, lt))
        print(f"phase {p}: plain {1 / pt:.2f} steps/s, learner {1 / lt:.2f}", flush=True)
    t_stop = time.perf_counter()
    (gate / "stop").touch()
    thread.join()
    teardown = box["t"][1] - t_stop
    all_ray = json.loads((gate / "ray.json").read_text())
    startup = entered - sum(all_ray[:WARMUP])
    ray_times = all_ray[WARMUP:]
    ray_phase = [statistics.median(ray_times[i * args.steps:(i + 1) * args.steps]) for i in range(args.phases)]
    # Ray's defaults for comparison: 1 CPU, 1 thread, no pauses
    cfg1 = {**cfg, "threads": 1, "gate": "", "out": str(gate / "ray1.json"), "phases": 2}
    t1, _ = start_ray_train(cfg1, 1.0)
    t1.join()
    ray1 = statistics.median(json.loads((gate / "ray1.json").read_text())[WARMUP:])
    ray.shutdown()

    rows = {"plain": [1 / p for p, _ in per_phase], "learner": [1 / l for _, l in per_phase],
            "ray": [1 / r for r in ray_phase]}
    ratio = {k: statistics.median(a / b for a, b in zip(v, rows["plain"])) for k, v in rows.items()}
    print(f"\n{ARCH}, 64 px, batch 32, CPU, {THREADS} torch threads, {args.phases} phases x {args.steps} steps; "
          "'vs plain' = median over phases of (steps/s / plain steps/s in the same phase)")
    names = {"plain": "plain PyTorch", "learner": "Learner.fit_one_cycle",
             "ray": f"Ray Train, 1 worker ({cpus:g} CPU, {THREADS} threads)"}
    print(f"{'loop':<44}{'steps/s':>9}{'vs plain':>10}")
    for k, v in rows.items():
        print(f"{names[k]:<44}{statistics.median(v):>9.2f}{ratio[k]:>9.2f}x")
    print(f"{'Ray Train, Ray defaults (1 CPU, 1 thread)':<44}{1 / ray1:>9.2f}   (not interleaved)")
    print(f"Ray Train fixed cost of one run: {startup:.1f} s from fit() to the first step, "
          f"{teardown:.1f} s from the last step until fit() returns")


if __name__ == "__main__":
    main()
