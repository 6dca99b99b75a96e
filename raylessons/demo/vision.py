"""The demo's image workflows: Planet (on Ray Train), its Tune sweep, CamVid and head pose (in this process)."""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ..export_meta import read_export_meta
from ..interpret import Interpretation
from ..plan import plan_summary
from ..sweep import SweepConfig, run_sweep
from ..tasks import TASKS
from .common import add_run_pictures, find_lr, heading, synth_once, train

__all__ = ["demo_planet", "demo_sweep", "demo_camvid", "demo_head_pose", "planet_thresholds", "PLANET_LR_RANGE"]

# from scratch the finder's curve is noisy: the steepest slope is kept in this range (the sweep's guide too)
PLANET_LR_RANGE = (1e-3, 3e-2)


def demo_planet(out: Path, p: dict, report, n: int | None = None) -> dict:
    """Generate Planet, show a batch, lr_find, then the lesson plan (frozen, then unfrozen with a slice) on Ray Train."""
    planet = TASKS["planet"]

    section = report.section("Planet: multi-label tagging (Ray Train)")
    heading("Planet: generated data")
    data_dir = synth_once("planet", out / "data" / "planet", "train_v2.csv", n=n or p["n"], size=p["image_size"],
                          seed=0)
    cfg = planet.Config(data=str(data_dir), size=p["size"], bs=p["bs"], arch=p["arch"], pretrained=False)
    src = planet.build_source(cfg)
    data = planet.build_data(cfg, src=src)
    print(f"{data_dir}: {len(src.train)} train / {len(src.valid)} valid images, {len(src.classes)} tags")
    section.note(f"{len(src.train)} train / {len(src.valid)} valid generated chips, {len(src.classes)} tags; "
                 f"{p['arch']} from scratch at {p['size']} px.")
    section.image(data.show_batch(rows=3, path=out / "planet_batch.png"), "data.show_batch(rows=3)")

    heading("Planet: lr_find (body frozen, as in the plan's first stage)")
    learn = planet.build_learner(data, cfg)
    steepest, min_div_10 = find_lr(learn, out / "planet_lr_find.png", p["finder_iters"])
    lo, hi = PLANET_LR_RANGE
    lr = float(min(max(steepest, lo), hi)) if math.isfinite(steepest) else hi
    print(f"using {lr:.2e} (the steepest slope kept within [{lo:g}, {hi:g}])")
    section.image(out / "planet_lr_find.png", f"learn.lr_find(): steepest {steepest:.2e}, min loss/10 "
                                              f"{min_div_10:.2e}; the plan uses {lr:.2e}")

    heading("Planet: Ray Train (stage 1 frozen, stage 2 unfrozen with a slice)")
    plan = [{"freeze_to": -1, "epochs": p["stage1_epochs"], "max_lr": f"slice({lr})"},
            # the lesson's rule after unfreezing: end below the stage-1 rate (lr/3 here), a decade lower at the start
            {"unfreeze": True, "epochs": p["stage2_epochs"], "max_lr": f"slice({lr / 30:.3g}, {lr / 3:.3g})"}]
    result = train("planet", cfg, plan, out, num_workers=p["num_workers"])
    result.update(plan=plan, data_dir=str(data_dir), task_config=asdict(cfg), lr=lr)
    result["valid_items"] = src.valid.items
    result["labels"] = pd.read_csv(data_dir / "train_v2.csv").set_index("image_name")["tags"].to_dict()
    print(f"Planet validation fbeta: {result['metrics']['fbeta']:.4f}  "
          f"(accuracy_thresh {result['metrics']['accuracy_thresh']:.4f}); export: {result['export']}")
    section.note(f"Validation F2 (fbeta, threshold 0.2): {result['metrics']['fbeta']:.4f}.")
    add_run_pictures(section, learn, result, out, "planet")
    planet_thresholds(section, learn, result, out)
    return result


def planet_thresholds(section, learn, result: dict, out: Path) -> None:
    """The trained model's top losses and one threshold per tag (chosen on validation); the export carries them,
    so Serve decides each tag with its own."""
    heading("Planet: look inside (top losses, a threshold per tag)")
    interp = Interpretation.from_learner(learn)  # `learn` holds the trained weights (add_run_pictures)
    section.image(interp.plot_top_losses(9, out / "planet_top_losses.png"),
                  "interp.plot_top_losses(9): the validation chips the model got most wrong")
    thresholds = interp.optimal_thresholds()
    base, tuned = interp.fbeta(), interp.fbeta(thresholds)
    result["thresholds"], result["fbeta_per_tag"] = thresholds, tuned
    meta = read_export_meta(result["export"])
    learn.export(result["export"], extra={"thresholds": thresholds, "metrics": meta.get("metrics", {})})
    moved = {t: v for t, v in thresholds.items() if abs(v - interp.threshold) > 1e-9}
    section.note(f"interp.optimal_thresholds(): validation F2 {base:.4f} at the global 0.2, {tuned:.4f} with a "
                 f"threshold per tag ({tuned - base:+.4f}); the served export carries them "
                 f"({len(moved)} of {len(thresholds)} tags moved).")


def demo_sweep(out: Path, planet: dict, p: dict, report) -> dict:
    """LR finders as Ray tasks, then an ASHA sweep of slice bands and unfreezing schedules on Planet: the same
    data and the same epoch budget as the lesson plan of the Planet section, so the two compare like with like."""
    epochs = sum(st["epochs"] for st in planet["plan"])
    title = (f"Ray Tune: LR-finder-guided sweep (Planet, ASHA; {p['trials']} trials of {epochs} epochs, "
             f"the lesson plan's data and budget)")
    heading(title)
    cfg = SweepConfig(task="planet", task_config=planet["task_config"], trials=p["trials"],
                      max_concurrent=p["max_concurrent"], epochs=epochs, schedules=["two_stage", "all"],
                      finder_iters=p["finder_iters"], guide_clamp=list(PLANET_LR_RANGE),
                      storage_path=str(out / "sweeps"), verbose=0)
    shutil.rmtree(out / "sweeps", ignore_errors=True)  # a finished sweep of the same options would just restore
    t0 = time.perf_counter()
    result = run_sweep(cfg)
    print(Path(result["table_md"]).read_text())
    lesson, best = planet["metrics"]["fbeta"], result["best"]["fbeta"]
    verdict = (f"on the same data and {epochs}-epoch budget: lesson plan fbeta {lesson:.4f} "
               f"({plan_summary(planet['plan'])}, the Planet section's run), sweep best {best:.4f} "
               f"({result['best']['plan']})")
    print(f"sweep took {time.perf_counter() - t0:.0f} s; {verdict}; best export {result['best']['export']}")
    result["lesson_fbeta"], result["epochs"] = lesson, epochs
    section = report.section("Planet sweep (Ray Tune, ASHA)")
    section.note(f"{p['trials']} trials, {p['max_concurrent']} at a time; {verdict}. The best trial is picked on the "
                 "validation set that also scores the lesson plan. The table's \"(lesson)\" trial is the notebook's "
                 "recipe at this budget, its epochs split as the notebook splits them.")
    section.image(result["finders"]["frozen"], "frozen finder (a Ray task): the stage-1 guide")
    section.image(result["finders"]["unfrozen"], "unfrozen finder after one frozen epoch: the slice guide")
    section.image(result["plot"], "each trial's fbeta against its rates (x: stopped early by ASHA)")
    section.table(pd.read_csv(result["table_csv"]).drop(columns=["path", "node_id"], errors="ignore"),
                  "results.csv, best first")
    return result


def demo_camvid(out: Path, p: dict, report) -> dict:
    """Generate CamVid, show a batch, lr_find, train a U-Net (frozen, then unfrozen with a slice)."""
    camvid = TASKS["camvid"]

    section = report.section("CamVid: segmentation with a U-Net")
    heading("CamVid: generated data")
    data_dir = synth_once("camvid", out / "data" / "camvid", "codes.txt", n=p["n"], size=p["image_size"], seed=0)
    cfg = camvid.Config(data=str(data_dir), size=p["size"], bs=p["bs"], arch=p["arch"], pretrained=False)
    src = camvid.build_source(cfg)
    data = camvid.build_data(cfg, src=src)
    print(f"{data_dir}: {len(src.train)} train / {len(src.valid)} valid frames, {len(src.classes)} codes; "
          f"training at {p['size'][0]}x{p['size'][1]}")
    section.note(f"{len(src.train)} train / {len(src.valid)} valid generated street frames, {len(src.classes)} "
                 f"codes (Void ignored by the metric); a U-Net on {p['arch']} from scratch at "
                 f"{p['size'][0]}x{p['size'][1]}.")
    section.image(data.show_batch(rows=2, path=out / "camvid_batch.png"), "data.show_batch(rows=2)")

    heading("CamVid: lr_find, then the U-Net frozen, then unfrozen with a slice")
    lr = p["lr"]
    learn = camvid.build_learner(data, cfg)
    find_lr(learn, out / "camvid_lr_find.png", p["finder_iters"], used=lr)
    section.image(out / "camvid_lr_find.png", f"learn.lr_find() on the frozen U-Net; the plan uses {lr:g}")
    plan = [{"freeze": True, "epochs": p["stage1_epochs"], "max_lr": f"slice({lr})", "pct_start": 0.9},
            {"unfreeze": True, "epochs": p["stage2_epochs"], "max_lr": f"slice({lr / 400:.3g}, {lr / 4:.3g})",
             "pct_start": 0.8}]
    result = train("camvid", cfg, plan, out, num_workers=p["num_workers"])
    result["valid_items"] = src.valid.items
    result["labels_dir"] = data_dir / cfg.labels
    print(f"CamVid validation accuracy (Void ignored): {result['metrics']['acc_camvid']:.4f}; "
          f"export: {result['export']}")
    section.note(f"Validation pixel accuracy, Void ignored: {result['metrics']['acc_camvid']:.4f}.")
    add_run_pictures(section, learn, result, out, "camvid")
    interp = Interpretation.from_learner(learn)
    iou = interp.per_class_iou().dropna().sort_values("pixels", ascending=False).head(5)
    worst = ", ".join(f"{name} ({acc:.2f})" for name, acc in interp.worst_frames(3))
    section.note(f"Interpretation: mean IoU {interp.mean_iou():.3f}; IoU of the largest classes: "
                 + ", ".join(f"{c} {v:.2f}" for c, v in zip(iou["class"], iou["iou"])) + f"; worst frames: {worst}.")
    return result


def demo_head_pose(out: Path, p: dict, report) -> dict:
    """Generate BIWI, show a batch, lr_find, train the point regressor, validated on the held-out person 13."""
    head_pose = TASKS["head_pose"]

    section = report.section("Head pose: regressing the head centre")
    heading("Head pose: generated data")
    data_dir = synth_once("biwi", out / "data" / "biwi_head_pose", "13", persons=24, frames=p["frames"],
                          size=p["image_size"], seed=0)
    cfg = head_pose.Config(data=str(data_dir), size=p["size"], bs=p["bs"], arch=p["arch"], pretrained=False,
                           ps=p["ps"], zero_head=True, tfms=dict(p["tfms"]))
    src = head_pose.build_source(cfg)
    data = head_pose.build_data(cfg, src=src)
    print(f"{data_dir}: {len(src.train)} train frames / {len(src.valid)} valid frames (person 13 held out)")
    section.note(f"{len(src.train)} train frames of 23 people, {len(src.valid)} valid frames of person 13; "
                 f"{p['arch']} from scratch at {p['size'][0]}x{p['size'][1]}, MSELossFlat on (row, col) in [-1, 1].")
    section.image(data.show_batch(rows=2, path=out / "head_pose_batch.png"), "data.show_batch(rows=2)")

    heading("Head pose: lr_find, then MSELossFlat on (row, col) in [-1, 1]")
    learn = head_pose.build_learner(data, cfg)
    find_lr(learn, out / "head_pose_lr_find.png", p["finder_iters"], used=p["lr"], freeze=False)
    section.image(out / "head_pose_lr_find.png", f"learn.lr_find() (the whole model trains); the plan uses "
                                                 f"{p['lr']:g}")
    plan = [{"epochs": p["epochs"], "max_lr": f"slice({p['lr']})"}]
    result = train("head_pose", cfg, plan, out, num_workers=p["num_workers"])
    result["valid_items"] = src.valid.items
    print(f"Head pose validation MSE (in [-1, 1]): {result['metrics']['valid_loss']:.4f}; "
          f"export: {result['export']}")
    section.note(f"Validation MSE in [-1, 1] coordinates: {result['metrics']['valid_loss']:.4f}.")
    add_run_pictures(section, learn, result, out, "head_pose", rows=3)
    errors = Interpretation.from_learner(learn).error_summary()
    if errors["items"]:
        section.note(f"Interpretation: the predicted centre is off by {errors['median']:.1f} px (median; 90th "
                     f"percentile {errors['p90']:.1f}, worst {errors['max']:.1f}) in the original frames' pixels.")
    return result
