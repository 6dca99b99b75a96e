"""Ray Train: a plan on 2 CPU workers (DDP), per-epoch checkpoints, resume after a killed run, the job."""
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from raylessons.distributed.train import TrainRun, epoch_rows, fit_plan
from raylessons.errors import ConfigError, DataError
from raylessons.learner import load_learner
from raylessons.testing.faults import train_workers

pytestmark = pytest.mark.ray

PLAN = [{"freeze_to": -1, "epochs": 1, "max_lr": "slice(1e-2)"},
        {"unfreeze": True, "epochs": 2, "max_lr": [1e-4, 1e-2]}]


def task_config(planet_dir):
    return {"data": str(planet_dir), "size": 32, "bs": 16, "arch": "resnet18"}


def ray_workers() -> list[int]:
    """PIDs of the Ray Train workers this test process's Ray started (not another session's on the machine)."""
    return train_workers()


def kill_one_worker_when_whole(path: Path, delay: float = 0.3, timeout: float = 300) -> tuple[threading.Thread, list]:
    """SIGKILL one Train worker `delay` s (mid-epoch) after the checkpoint `path` is whole; (pid, the newest whole
    checkpoint at the kill) goes in the list."""
    from raylessons.distributed.checkpoints import is_complete

    killed: list[tuple[int, str]] = []

    def watch():
        end = time.time() + timeout
        while time.time() < end and not is_complete(path):
            time.sleep(0.05)
        time.sleep(delay)
        pids = ray_workers()
        if pids:
            newest = max(p.name for p in path.parent.glob("checkpoint_s*") if is_complete(p))
            os.kill(pids[-1], signal.SIGKILL)
            killed.append((pids[-1], newest))
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t, killed


def tensorboard_events(run_dir: Path):
    """The TensorBoard events of a run (rank 0's, in run_dir/tensorboard), read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raylessons.distributed.worker import TENSORBOARD_DIR

    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def _load_job(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_job", Path(__file__).parents[1] / "jobs" / f"{name}.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


@pytest.fixture(scope="module")
def uninterrupted(ray_session, planet_dir, module_tmp) -> tuple[int, str, Path]:
    """PLAN on 2 workers, seed 0, through the job entrypoint (jobs/planet.py): (exit code, what it printed, run dir)."""
    import contextlib
    import io

    storage = module_tmp
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = _load_job("planet").main(["--data", str(planet_dir), "--size", "32", "--bs", "16", "--arch", "resnet18",
                                       "--plan", json.dumps(PLAN), "--num-workers", "2", "--seed", "0",
                                       "--storage", str(storage), "--name", "whole"])
    return rc, out.getvalue(), storage / "whole"


def test_job_entrypoint_in_process(uninterrupted):
    rc, printed, run_dir = uninterrupted
    assert rc == 0
    assert '"export"' in printed and "fbeta" in printed
    meta = json.loads((run_dir / "export" / "meta.json").read_text())
    assert meta["arch"] == "resnet18" and (run_dir / "export" / "model.pt").is_file()
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["num_workers"] == 2 and run_json["plan"][1]["max_lr"] == "slice(0.0001, 0.01)"
    # rank 0's TensorBoard events in run_dir/tensorboard (one file: only rank 0 writes): the train loss of each of
    # its batches, step counted over the plan's stages; per epoch of the plan the validation, the metrics and each
    # layer group's lr and momentum; the first training batch's images once
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = tensorboard_events(run_dir)
    rows = epoch_rows(run_dir)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(sum(len(r["batch_losses"]) for r in rows)))
    for tag in ("valid/loss", "metrics/accuracy_thresh", "metrics/fbeta", *(f"lr/group_{i}" for i in range(3)),
                *(f"mom/group_{i}" for i in range(3))):
        assert [e.step for e in events.Scalars(tag)] == [0, 1, 2], tag
    valid = [e.value for e in events.Scalars("valid/loss")]
    assert valid == pytest.approx([r["valid_loss"] for r in rows], rel=1e-5)
    lrs = [[e.value for e in events.Scalars(f"lr/group_{i}")] for i in range(3)]
    assert lrs[0][1] < lrs[2][1]  # the unfrozen stage's discriminative lrs
    assert [len(events.Images("show_batch")), events.Images("show_batch")[0].step] == [1, 0]


def test_killed_worker_restarts_from_the_newest_checkpoint(uninterrupted, planet_dir, tmp_path):
    """One of 2 workers SIGKILLed mid-epoch: FailureConfig restarts the worker group inside the same fit, from
    the newest checkpoint reported (registered by Ray or not), and the run ends where an uninterrupted one does."""
    from raylessons.distributed.checkpoints import is_complete

    run = TrainRun(task="planet", plan=PLAN, task_config=task_config(planet_dir), name="killed",
                   storage_path=str(tmp_path), num_workers=2, max_failures=1, seed=0)
    watcher, killed = kill_one_worker_when_whole(tmp_path / "killed" / "checkpoint_s00_e000")
    result = fit_plan(run)
    watcher.join()
    ((pid, newest),) = killed
    assert pid not in ray_workers()
    m = result["metrics"]
    assert m["done"] is True and m["stage"] == 1 and m["stage_epoch"] == 1 and m["training_iteration_epochs"] == 3
    # it resumed from the newest checkpoint reported before the kill (s00_e000 here: 0.3 s into a 1-2 s epoch),
    # whether Ray registered it or not
    (resume,) = [json.loads(line) for line in (tmp_path / "killed" / "resumes.jsonl").read_text().splitlines()]
    assert resume["checkpoint"] == newest
    assert m["resumed_from_epochs"] == {"checkpoint_s00_e000": 1, "checkpoint_s01_e000": 2}[newest]
    # the final metrics of the uninterrupted run of the same seed: model and optimizer come back from the
    # checkpoint and every epoch's augmentation and dropout are seeded by (seed, rank, epoch), so the restarted
    # epochs replay exactly (on this tiny set, unseeded replays differed by 0.1 or more in valid_loss)
    reference = json.loads((uninterrupted[2] / "export" / "meta.json").read_text())["metrics"]
    for key in ("train_loss", "valid_loss", "fbeta"):
        assert m[key] == pytest.approx(reference[key], rel=1e-5), key
    pos = json.loads((Path(result["checkpoint"]) / "position.json").read_text())
    assert (pos["stage"], pos["epoch"]) == (1, 1)
    # every checkpoint left is whole (its manifest matches) and tracked by Ray: nothing half-written or orphaned
    ckpts = sorted(p for p in (tmp_path / "killed").glob("checkpoint_s*") if p.is_dir())
    assert ckpts[-1].name == "checkpoint_s01_e001" and all(is_complete(p) for p in ckpts)
    assert len(ckpts) <= run.num_to_keep
    learn = load_learner(result["export"])
    tags, mask, probs = learn.predict(next((planet_dir / "train-jpg").glob("*.jpg")))
    assert probs.shape == (len(learn.data.classes),)
    # TensorBoard: the restarted rank 0 added an event file to the same directory and went on from the checkpoint's
    # step counts; what the first one logged past the checkpoint is hidden (purged), so every batch shows once
    run_dir = tmp_path / "killed"
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    events = tensorboard_events(run_dir)
    n_batches = sum(len(r["batch_losses"]) for r in epoch_rows(run_dir))
    assert [e.step for e in events.Scalars("train/loss")] == list(range(n_batches))
    assert sorted({e.step for e in events.Scalars("valid/loss")}) == [0, 1, 2]
    assert len(events.Images("show_batch")) == 1  # not written again by the restarted run


def test_bad_plan_and_data_fail_before_workers_start(ray_session, planet_dir, tmp_path):
    bad = TrainRun(task="planet", plan=[{"epochs": 1, "max_lr": 1e-3, "freez_to": -1}],
                   task_config=task_config(planet_dir), storage_path=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown keys \\['freez_to'\\]"):
        fit_plan(bad)
    missing = TrainRun(task="planet", plan=PLAN, task_config={**task_config(planet_dir), "csv": "nope.csv"},
                       storage_path=str(tmp_path))
    with pytest.raises(DataError, match="nope.csv.*CSV file not found"):
        fit_plan(missing)


def test_camvid_job_on_two_ddp_workers(ray_session, tmp_path, capsys):
    from raylessons.data.synth import synth

    root = synth("camvid", tmp_path / "camvid", n=10, size=(48, 64), seed=0)
    rc = _load_job("camvid").main(["--data", str(root), "--size", "32,48", "--bs", "2", "--arch", "resnet18",
                                   "--plan", "smoke", "--num-workers", "2", "--storage", str(tmp_path),
                                   "--name", "cv"])
    assert rc == 0
    assert "acc_camvid" in capsys.readouterr().out
    run = json.loads((tmp_path / "cv" / "run.json").read_text())
    assert run["task"] == "camvid" and run["task_config"]["size"] == [32, 48] and run["num_workers"] == 2
    learn = load_learner(tmp_path / "cv" / "export")
    assert learn.export_meta["label_kind"] == "segmentation" and learn.export_meta["void_code"] == 30
    assert 0 <= learn.export_meta["metrics"]["acc_camvid"] <= 1
    image = sorted((root / "images").glob("*.png"))[0]
    mask, present, probs = learn.predict(image)
    assert mask.shape == (48, 64) and probs.shape == (32, 32, 48) and present


def test_head_pose_run_in_this_process_exports_points_and_resumes_by_name(tmp_path):
    """num_workers=0: the plan runs here without Ray, with the same checkpoints, export and resume by name."""
    from raylessons.data.synth import synth

    root = synth("biwi", tmp_path / "biwi", persons=13, frames=2, seed=0)
    run = TrainRun(task="head_pose", plan=[{"epochs": 2, "max_lr": 1e-3}],
                   task_config={"data": str(root), "size": [24, 32], "bs": 8, "arch": "resnet18"},
                   name="hp", storage_path=str(tmp_path), num_workers=0, num_to_keep=1)
    result = fit_plan(run)
    assert result["metrics"]["valid_loss"] >= 0 and result["metrics"]["done"] is True
    assert sorted(p.name for p in (tmp_path / "hp").glob("checkpoint_*")) == ["checkpoint_s00_e001"]
    learn = load_learner(result["export"])
    rc, unit, _ = learn.predict(next((root / "13").glob("*_rgb.jpg")))
    assert rc.shape == (1, 2) and unit.shape == (1, 2)
    # the same name again: it resumes from its newest whole checkpoint (a half-written newer one is removed)
    # and, the plan being done, only writes the export again
    half = tmp_path / "hp" / "checkpoint_s00_e002"
    half.mkdir()
    (half / "state.pt").write_bytes(b"cut short")
    again = fit_plan(run)
    assert not half.exists() and again["metrics"]["resumed_from_epochs"] == 2
    assert again["metrics"]["valid_loss"] == pytest.approx(result["metrics"]["valid_loss"], rel=1e-6)
    (resume,) = [json.loads(line) for line in (tmp_path / "hp" / "resumes.jsonl").read_text().splitlines()]
    assert resume["checkpoint"] == "checkpoint_s00_e001"
    with pytest.raises(ConfigError, match="num_workers must be >= 0"):
        fit_plan(TrainRun(task="head_pose", plan=run.plan, task_config=run.task_config, num_workers=-1))
    with pytest.raises(ConfigError, match="placement_strategy must be one of PACK, SPREAD, STRICT_SPREAD, got 'ANY'"):
        fit_plan(TrainRun(task="head_pose", plan=run.plan, task_config=run.task_config, placement_strategy="ANY"))


def test_sync_batchnorm_keeps_layer_groups_and_freezing():
    import torch

    from raylessons.distributed.worker import use_sync_batchnorm
    from raylessons.learner import Learner
    from raylessons.models.unet import create_unet_model, unet_split

    class Data:
        c, path, loss_func = 3, Path("."), torch.nn.CrossEntropyLoss()

    learn = Learner(Data(), create_unet_model("resnet18", 3), splitter=unet_split, device="cpu")
    learn.freeze()
    before = {id(p): p.requires_grad for p in learn.model.parameters()}
    use_sync_batchnorm(learn)
    modules = list(learn.model.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in modules)
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in modules) > 20
    # the groups hold the converted modules, and the parameters (and their freezing) are the same objects
    group_modules = {id(m) for g in learn.layer_groups for m in g.modules()}
    assert all(id(m) in group_modules for m in modules if isinstance(m, torch.nn.SyncBatchNorm))
    assert {id(p): p.requires_grad for p in learn.model.parameters()} == before


def test_ulmfit_chain_on_ray_train(ray_session, tmp_path, capsys):
    """pretrain-lm on a generated corpus -> LM fine-tuning job on IMDB (both in this process: num_workers=0) ->
    classifier job on 2 DDP workers of Ray Train."""
    from raylessons.cli import main as cli
    from raylessons.data.synth.imdb import synth

    imdb = synth(tmp_path / "imdb", n_train=40, n_test=20, n_unsup=10, n_sample=0)
    small = ["--emb-sz", "16", "--n-hid", "24", "--n-layers", "2"]
    assert cli(["pretrain-lm", "--corpus", str(tmp_path / "corpus"), "--synth", "40", "--epochs", "1", "--bs", "8",
                "--bptt", "20", *small, "--num-workers", "0", "--storage", str(tmp_path), "--name", "pre"]) == 0
    pre_meta = json.loads((tmp_path / "pre" / "export" / "meta.json").read_text())
    assert pre_meta["label_kind"] == "lm" and pre_meta["model"]["config"]["n_hid"] == 24

    rc = _load_job("imdb_lm").main([
        "--data", str(imdb), "--plan", "smoke", "--bs", "8", "--pretrained", str(tmp_path / "pre" / "export"),
        "--set", "bptt=20", "--set", 'model={"emb_sz": 16, "n_hid": 24, "n_layers": 2}', "--num-workers", "0",
        "--storage", str(tmp_path), "--name", "lm"])
    assert rc == 0
    lm_meta = json.loads((tmp_path / "lm" / "export" / "meta.json").read_text())
    assert lm_meta["task"] == "imdb_lm" and 0 <= lm_meta["metrics"]["accuracy"] <= 1
    assert lm_meta["itos"] != pre_meta["itos"]  # the IMDB vocab; the corpus rows were mapped onto it

    rc = _load_job("imdb_clas").main([
        "--data", str(imdb), "--lm-export", str(tmp_path / "lm" / "export"), "--plan", "smoke", "--bs", "4",
        "--num-workers", "2", "--storage", str(tmp_path), "--name", "clas"])
    assert rc == 0
    learn = load_learner(tmp_path / "clas" / "export")
    assert learn.export_meta["itos"] == lm_meta["itos"] and learn.export_meta["classes"] == ["neg", "pos"]
    label, _, probs = learn.predict("It was not good at all.")
    assert label in ("neg", "pos") and probs.shape == (2,)
    with pytest.raises(ConfigError, match="lm_export"):
        from raylessons.tasks import imdb_clas

        imdb_clas.build_source(imdb_clas.Config(data=str(imdb)))


def test_a_plan_is_parsed_once_and_its_stages_travel(planet_dir):
    """The worker config carries Stage objects (no dicts parsed again), through pickling as Ray ships it."""
    import pickle

    from raylessons.distributed.worker import worker_config
    from raylessons.plan import epochs_before, parse_plan
    from raylessons.tasks import TASKS

    stages = TASKS["planet"].load_plan(PLAN)
    assert parse_plan(stages, 3)[1] is stages[1]  # Stages are kept as they are, only checked
    worker = worker_config("planet", task_config(planet_dir), stages, seed=3, cpus=2)
    back = pickle.loads(pickle.dumps(worker))
    assert back == worker and back.stages[1].max_lr == slice(1e-4, 1e-2) and back.threads == 2
    assert back.task_config["csv"] == "train_v2.csv"  # every option of the task, resolved
    assert [epochs_before(stages, i) for i in range(len(stages) + 1)] == [0, 1, 3]
    assert TASKS["planet"].load_plan("smoke")[0].freeze_to == -1


def test_train_options_come_from_the_run_and_the_task(tmp_path):
    """Each option is declared once: TrainRun's fields and the task's Config fields are the flags."""
    import argparse
    import dataclasses

    from raylessons.distributed.cli import add_train_arguments
    from raylessons.options import option_values
    from raylessons.tasks import TASKS
    from raylessons.tasks.options import task_config_from_args

    parser = argparse.ArgumentParser()
    add_train_arguments(parser, "camvid", fixed=True)
    args = parser.parse_args(["--data", str(tmp_path), "--size", "32,48", "--bs", "2", "--plan", "smoke",
                              "--num-workers", "2", "--storage", "/s", "--set", "num_workers=1", "--no-use-gpu"])
    assert option_values(TrainRun, args) == {"plan": "smoke", "storage_path": "/s", "num_workers": 2,
                                             "use_gpu": False}
    assert task_config_from_args(args, TASKS["camvid"]) == {"data": str(tmp_path), "size": [32, 48], "bs": 2,
                                                             "num_workers": 1}
    with pytest.raises(SystemExit):  # a text task has no image size
        parser = argparse.ArgumentParser()
        add_train_arguments(parser, "imdb_lm", fixed=True)
        parser.parse_args(["--data", "d", "--size", "32"])
    for task in TASKS.values():  # every option says what it is
        assert all(f.metadata.get("help") for f in dataclasses.fields(task.Config)), task.name
    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainRun))
