"""`raylessons demo`: every workflow on generated data, trained by Ray Train, served by Ray Serve."""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

__all__ = ["run_demo", "demo_planet", "PLANET_DEMO"]

# sized so that the Planet part ends in a few minutes on 2 CPU cores, from scratch (no pretrained weights)
PLANET_DEMO = dict(n=1200, image_size=64, size=48, bs=32, arch="resnet18", stage1_epochs=1, stage2_epochs=6)


def _section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)


def demo_planet(out: Path, n: int | None = None) -> dict:
    """Generate Planet, lr_find, train frozen then unfrozen (slice) on Ray Train; returns the run result."""
    from .data.synth import synth
    from .distributed.train import TrainRun, fit_plan
    from .tasks import planet

    p = PLANET_DEMO
    _section("Planet: generated data")
    data_dir = out / "data" / "planet"
    if not (data_dir / "train_v2.csv").is_file():
        synth("planet", data_dir, n=n or p["n"], size=p["image_size"], seed=0)
    cfg = planet.Config(data=str(data_dir), size=p["size"], bs=p["bs"], arch=p["arch"], pretrained=False)
    src = planet.build_source(cfg)
    print(f"{data_dir}: {len(src.train)} train / {len(src.valid)} valid images, {len(src.classes)} tags")

    _section("Planet: lr_find")
    learn = planet.build_learner(planet.build_data(cfg, src=src), cfg)
    learn.lr_find()
    steepest, min_div_10 = learn.recorder.plot(out / "planet_lr_find.png")
    lr = float(min(max(steepest, 1e-3), 3e-2))  # from scratch the curve is noisy: keep the pick sane
    print(f"suggested lr {steepest:.2e} (min loss/10 {min_div_10:.2e}); using {lr:.2e}; "
          f"plot: {out / 'planet_lr_find.png'}")

    _section("Planet: Ray Train (stage 1 frozen, stage 2 unfrozen with a slice)")
    plan = [{"freeze_to": -1, "epochs": p["stage1_epochs"], "max_lr": f"slice({lr})"},
            # the lesson's rule after unfreezing: end below the stage-1 rate (lr/3 here), a decade lower at the start
            {"unfreeze": True, "epochs": p["stage2_epochs"], "max_lr": f"slice({lr / 30:.3g}, {lr / 3:.3g})"}]
    print("plan:", plan)
    run_dir = out / "runs" / "demo-planet"
    shutil.rmtree(run_dir, ignore_errors=True)  # a finished run of the same name would just resume
    result = fit_plan(TrainRun(task="planet", plan=plan, task_config=asdict(cfg), name="demo-planet",
                               storage_path=str(out / "runs"), num_workers=1))
    result["valid_items"] = src.valid.items
    result["labels"] = pd.read_csv(data_dir / "train_v2.csv").set_index("image_name")["tags"].to_dict()
    print(f"Planet validation fbeta: {result['metrics']['fbeta']:.4f}  "
          f"(accuracy_thresh {result['metrics']['accuracy_thresh']:.4f}); export: {result['export']}")
    return result


def _query_planet(base_url: str, result: dict, k: int = 4) -> None:
    from .client import predict_files

    items = result["valid_items"][:k]
    answers = predict_files("planet", base_url, items)
    print(f"POST {base_url}/planet")
    for path, ans in zip(items, answers):
        true = sorted(result["labels"][Path(path).stem].split())
        got = sorted(ans.get("tags", []))
        print(f"  {Path(path).name:>14}  predicted {' '.join(got):<50} true {' '.join(true)}")


def run_demo(out: str | Path = "demo-out", n: int | None = None, port: int = 8000) -> int:
    """Run every workflow end to end; prints metrics and HTTP answers."""
    import ray

    from .distributed.launch import init_ray
    from .serving.local import shutdown, start

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    init_ray()
    try:
        planet = demo_planet(out, n)
        _section("Ray Serve")
        base = start({"planet": planet["export"]}, port=port)
        print(f"serving on {base}")
        _query_planet(base, planet)
        _section("Summary")
        print(f"Planet validation fbeta {planet['metrics']['fbeta']:.4f}")
        print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    finally:
        try:
            shutdown()
        finally:
            ray.shutdown()
    return 0
