"""Every workflow's sweep preset, run for real: a 2-trial smoke sweep per task on tiny generated data (the lesson's
plan first, then a drawn trial), and ULMFiT's gradual unfreezing inside Tune (one more layer group per stage, read
back from the trial's plan and reports)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from raylessons.plan import plan_summary

pytestmark = pytest.mark.ray

LM_SIZES = {"emb_sz": 16, "n_hid": 32, "n_layers": 3}
EPOCHS = {"planet": 2, "camvid": 2, "head_pose": 2, "imdb_clas": 4}


@pytest.fixture(scope="module")
def options(planet_dir, tmp_path_factory) -> dict[str, dict]:
    """Each sweep task's options on tiny generated data (the classifier's on a 1-epoch LM's export)."""
    import torch

    from raylessons.data.synth import synth
    from raylessons.tasks import get_task

    root = tmp_path_factory.mktemp("presets")
    imdb = synth("imdb", root / "imdb", n_train=60, n_test=40, n_unsup=20, n_sample=0, seed=0)
    torch.manual_seed(0)
    lm = get_task("imdb_lm").learner({"data": str(imdb), "bs": 8, "model": LM_SIZES})
    lm.recorder.verbose = False
    lm.fit_one_cycle(1, 1e-2)
    vision = {"size": 32, "bs": 8, "arch": "resnet18"}
    return {"planet": {"data": str(planet_dir), **vision},
            "camvid": {"data": str(synth("camvid", root / "camvid", n=12, size=(32, 48), seed=0)), **vision},
            "head_pose": {"data": str(synth("biwi", root / "biwi", persons=13, frames=2, seed=0)), **vision},
            "imdb_clas": {"data": str(imdb), "bs": 8, "lm_export": str(lm.export(root / "lm_export"))}}


def _trial_records(exp: Path) -> dict[str, tuple[list, list]]:
    """{trial dir: (its plan.json, its per-epoch reports from result.json)}."""
    out = {}
    for plan in exp.glob("sweep_trial_*/plan.json"):
        lines = (plan.parent / "result.json").read_text().splitlines()
        out[plan.parent.name] = (json.loads(plan.read_text()), [json.loads(x) for x in lines if x.strip()])
    return out


@pytest.mark.parametrize("task", ["planet", "camvid", "head_pose", "imdb_clas"])
def test_each_tasks_preset_runs_a_two_trial_sweep(task, ray_session, options, tmp_path):
    """`raylessons sweep --task T` with T's preset space: the finders, then 2 trials that run their whole plans:
    the lesson's own plan, then a trial drawn from the preset's schedules with rates in the bands around the
    finders' guides (head pose: drawn by Optuna's TPE; CamVid: from Optuna's Sobol sequence, `search="qmc"`)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raylessons.sweep import SweepConfig, run_sweep
    from raylessons.sweep.space import plan_from_config
    from raylessons.tasks import get_task

    t = get_task(task)
    preset = t.sweep_preset
    cfg = SweepConfig(task=task, task_config=options[task], trials=2, max_concurrent=2, scheduler="fifo",
                      search={"head_pose": "optuna", "camvid": "qmc"}.get(task, "random"),
                      epochs=EPOCHS[task], finder_iters=20, storage_path=str(tmp_path), verbose=0)
    assert {name: getattr(cfg, name) for name in preset} == dict(preset)
    result = run_sweep(cfg)
    assert not result["errors"] and len(result["rows"]) == 2
    assert all(r["status"] == "finished" and r["epochs"] == EPOCHS[task] for r in result["rows"])
    assert (Path(result["best"]["export"]) / "meta.json").is_file()
    finders = json.loads((Path(result["path"]) / "finders.json").read_text())
    frozen, upper = finders["frozen"]["guide"], finders["unfrozen"]["upper"]
    assert upper == pytest.approx(frozen / cfg.divisor) or upper < frozen / cfg.divisor  # capped by the divisor
    lesson = [r for r in result["rows"] if r["stage1_lr"] == t.lesson_trial["stage1_lr"]]
    drawn = [r for r in result["rows"] if r["stage1_lr"] != t.lesson_trial["stage1_lr"]]
    assert len(lesson) == len(drawn) == 1
    assert lesson[0]["trial"].endswith(" (lesson)") and not drawn[0]["trial"].endswith(" (lesson)")
    assert lesson[0]["plan"] == plan_summary(plan_from_config(t.lesson_trial, EPOCHS[task]))
    (r,) = drawn
    assert r["schedule"] in preset["schedules"] and r["stage1_frac"] in preset["stage1_fracs"]
    assert r["ratio"] == pytest.approx(min(preset["ratios"], key=lambda x: abs(x - r["ratio"])))
    # the bands around the guides, stretched to cover the lesson's rates
    for name, guide in (("stage1_lr", frozen), ("upper", upper)):
        lo, hi = sorted([guide, t.lesson_trial[name]])
        assert lo / cfg.band <= r[name] <= hi * cfg.band
    records = _trial_records(Path(result["path"]))
    assert len(records) == 2
    # the preset's constants reach every trial's plan (CamVid's pct_start, ULMFiT's momentum)
    for plan, _ in records.values():
        assert all(s.get("pct_start") == (preset["pct_start"] or [None])[0] for s in plan)
        assert all(s.get("moms") == (preset["moms"] or [None])[0] for s in plan)
    # Tune's TensorBoard logger: `tensorboard --logdir <experiment>` shows each trial's metric, epoch by epoch
    for trial, (_, reports) in records.items():
        events = EventAccumulator(str(Path(result["path"]) / trial))
        events.Reload()
        curve = [(e.step, e.value) for e in events.Scalars(f"ray/tune/{t.metric}")]
        assert curve == [(i + 1, pytest.approx(rep[t.metric], rel=1e-5)) for i, rep in enumerate(reports)]
        # and the trial's own learner events (TensorBoardCallback): per batch, per epoch, one show_batch
        ours = EventAccumulator(str(Path(result["path"]) / trial / "tensorboard"))
        ours.Reload()
        assert [e.step for e in ours.Scalars("valid/loss")] == list(range(EPOCHS[task]))
        assert len(ours.Scalars("train/loss")) >= EPOCHS[task] and "lr/group_0" in ours.Tags()["scalars"]
    if task != "imdb_clas":
        return
    # ULMFiT's gradual unfreezing (the lesson's trial) ran end to end inside Tune: 4 stages of one epoch, one more
    # layer group each
    (plan, reports), = [rec for rec in records.values() if rec[0][0]["max_lr"] == "slice(0.02)"]
    assert [(s.get("freeze"), s.get("freeze_to"), s.get("unfreeze")) for s in plan] == [
        (True, None, None), (None, -2, None), (None, -3, None), (None, None, True)]
    assert [s["epochs"] for s in plan] == [1, 1, 1, 1]
    n_groups = len(t.learner(options[task], device="cpu").layer_groups)
    assert n_groups == 5  # embedding, 3 LSTM layers, the head
    assert [rep["unfrozen_groups"] for rep in reports] == [1, 2, 3, n_groups]
    assert [rep["stage"] for rep in reports] == [0, 1, 2, 3]
