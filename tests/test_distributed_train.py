"""Ray Train: a plan on 2 CPU workers (DDP), per-epoch checkpoints, resume after a killed run, the job."""
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from raylessons.distributed.train import TrainRun, fit_plan
from raylessons.errors import ConfigError, DataError, RaylessonsError
from raylessons.learner_io import load_learner

pytestmark = pytest.mark.ray

PLAN = [{"freeze_to": -1, "epochs": 1, "max_lr": "slice(1e-2)"},
        {"unfreeze": True, "epochs": 2, "max_lr": [1e-4, 1e-2]}]


def task_config(planet_dir):
    return {"data": str(planet_dir), "size": 32, "bs": 16, "arch": "resnet18"}


def ray_workers() -> list[int]:
    """PIDs of this machine's Ray Train worker processes."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"RayTrainWorker" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def kill_workers_after(path: Path, timeout: float = 300) -> threading.Thread:
    """Kill -9 every Train worker as soon as `path` (a checkpoint directory) appears."""
    def watch():
        end = time.time() + timeout
        while time.time() < end and not path.exists():
            time.sleep(0.05)
        for pid in ray_workers():
            os.kill(pid, signal.SIGKILL)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_killed_run_resumes_from_its_last_checkpoint(ray_session, planet_dir, tmp_path):
    run = TrainRun(task="planet", plan=PLAN, task_config=task_config(planet_dir), name="killed",
                   storage_path=str(tmp_path), num_workers=2, max_failures=0)
    first = tmp_path / "killed" / "checkpoint_s00_e000"
    watcher = kill_workers_after(first)
    with pytest.raises(RaylessonsError, match="training run 'killed' failed"):
        fit_plan(run)
    watcher.join()
    assert (first / "position.json").is_file()
    assert not (tmp_path / "killed" / "checkpoint_s01_e001").exists()

    result = fit_plan(run)  # same name: resumes
    m = result["metrics"]
    assert m["done"] is True and m["stage"] == 1 and m["stage_epoch"] == 1
    assert m["training_iteration_epochs"] == 3 and 0 <= m["fbeta"] <= 1
    pos = json.loads((Path(result["checkpoint"]) / "position.json").read_text())
    assert (pos["stage"], pos["epoch"]) == (1, 1)
    # the resumed run wrote stage 1's checkpoints and never redid stage 0
    ckpts = sorted(p.name for p in (tmp_path / "killed").glob("checkpoint_*"))
    assert ckpts[-1] == "checkpoint_s01_e001"
    learn = load_learner(result["export"])
    tags, mask, probs = learn.predict(next((planet_dir / "train-jpg").glob("*.jpg")))
    assert probs.shape == (len(learn.data.classes),)
    run_json = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert run_json["num_workers"] == 2 and run_json["plan"][1]["max_lr"] == "slice(0.0001, 0.01)"


def test_job_entrypoint_in_process(ray_session, planet_dir, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("planet_job", Path(__file__).parents[1] / "jobs" / "planet.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    rc = job.main(["--data", str(planet_dir), "--size", "32", "--bs", "16", "--arch", "resnet18",
                   "--plan", "smoke", "--num-workers", "1", "--storage", str(tmp_path), "--name", "job"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert '"export"' in printed and "fbeta" in printed
    export = tmp_path / "job" / "export"
    meta = json.loads((export / "meta.json").read_text())
    assert meta["arch"] == "resnet18" and (export / "model.pt").is_file()


def test_bad_plan_and_data_fail_before_workers_start(ray_session, planet_dir, tmp_path):
    bad = TrainRun(task="planet", plan=[{"epochs": 1, "max_lr": 1e-3, "freez_to": -1}],
                   task_config=task_config(planet_dir), storage_path=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown keys \\['freez_to'\\]"):
        fit_plan(bad)
    missing = TrainRun(task="planet", plan=PLAN, task_config={**task_config(planet_dir), "csv": "nope.csv"},
                       storage_path=str(tmp_path))
    with pytest.raises(DataError, match="nope.csv.*CSV file not found"):
        fit_plan(missing)
