"""Ray Tune sweeps on generated Planet data: ASHA, tables, the best export, errors before trials, restore."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from raylessons.errors import ConfigError

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]


def _cfg(planet_dir, storage, **kw):
    from raylessons.sweep import SweepConfig

    base = dict(task="planet", task_config={"data": str(planet_dir), "size": 32, "bs": 16, "arch": "resnet18"},
                trials=4, max_concurrent=2, epochs=3, storage_path=str(storage), warmup_epochs=1, finder_iters=40,
                grace_period=1, lesson_first=False)
    return SweepConfig(**{**base, **kw})


# two trials at the finder's guides, two at rates far too small to learn: ASHA must cut the latter at rung 1
POINTS = [{"stage1_lr": 2e-2, "upper": 2e-3, "ratio": 10.0, "schedule": "two_stage", "stage1_frac": 0.34},
          {"stage1_lr": 1e-2, "upper": 1e-3, "ratio": 10.0, "schedule": "two_stage", "stage1_frac": 0.34},
          {"stage1_lr": 1e-7, "upper": 1e-8, "ratio": 10.0, "schedule": "two_stage", "stage1_frac": 0.34},
          {"stage1_lr": 2e-7, "upper": 2e-8, "ratio": 10.0, "schedule": "two_stage", "stage1_frac": 0.34}]


@pytest.fixture(scope="module")
def sweep(ray_session, planet_dir, module_tmp):
    from raylessons.sweep import run_sweep

    cfg = _cfg(planet_dir, module_tmp, configs=POINTS, metric="valid_loss", mode="min")
    return cfg, run_sweep(cfg)


def test_asha_stops_the_hopeless_trials_early(sweep):
    cfg, result = sweep
    rows = result["rows"]
    assert len(rows) == 4 and not result["errors"]
    by_lr = {r["stage1_lr"]: r for r in rows}
    # the two hopeless trials are cut at the first rung (epoch 1); a good one runs to the end (the other
    # good one may be cut too: ASHA keeps the top 1/2 at each rung, whatever their absolute quality)
    assert [by_lr[lr]["status"] for lr in (1e-7, 2e-7)] == ["stopped early"] * 2
    assert by_lr[1e-7]["epochs"] == by_lr[2e-7]["epochs"] == 1
    assert "finished" in (by_lr[2e-2]["status"], by_lr[1e-2]["status"])
    assert max(by_lr[2e-2]["epochs"], by_lr[1e-2]["epochs"]) == 3
    assert len({r["trial"] for r in rows}) == 4
    # the table is sorted by the metric (valid_loss, lower first) and the best is a finished trial
    losses = [r["valid_loss"] for r in rows]
    assert losses == sorted(losses)
    assert result["best"]["status"] == "finished" and result["best"]["stage1_lr"] in (2e-2, 1e-2)


def test_results_are_written_with_each_trials_plan(sweep):
    cfg, result = sweep
    exp = Path(result["path"])
    table = pd.read_csv(result["table_csv"])
    assert len(table) == 4 and list(table["valid_loss"]) == sorted(table["valid_loss"])
    md = Path(result["table_md"]).read_text().splitlines()
    assert md[0].startswith("| trial | valid_loss |") and len(md) == 2 + 4
    assert all(line.count("|") == md[0].count("|") for line in md)  # plans don't break the columns
    for png in (result["plot"], *result["finders"].values()):
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finders = json.loads((exp / "finders.json").read_text())
    assert finders["frozen"]["guide"] > 0 and finders["unfrozen"]["lower"] < finders["unfrozen"]["upper"]
    assert finders["unfrozen"]["upper"] == pytest.approx(finders["frozen"]["guide"] / cfg.divisor)
    # the frozen guide is measured with the body frozen: resnet18's groups keep only BatchNorm and the head
    assert finders["frozen"]["trainable_counts"] == [20, 20, 8]
    plans = [json.loads(p.read_text()) for p in exp.glob("sweep_trial_*/plan.json")]
    assert len(plans) == 4
    assert {json.dumps(p[0]["max_lr"]) for p in plans} == {'"slice(0.02)"', '"slice(0.01)"', '"slice(1e-07)"',
                                                          '"slice(2e-07)"'}
    assert all([s["epochs"] for s in p] == [1, 2] for p in plans)


def test_best_export_loads_in_the_serve_app(sweep, planet_dir):
    import ray

    def replica_probs(export: str, image: str) -> list:  # local: shipped by value (workers can't import tests)
        """In a Ray worker, as Serve would: build the planet replica from `export` and run one image."""
        from raylessons.serving.routes import ROUTES

        replica = ROUTES["planet"].model.func_or_class("planet", export)  # what a replica's constructor does
        predictor = replica.loaded.predictor
        return predictor.forward([predictor.prepare(image)[0]])[0].tolist()

    from raylessons.inference import Predictor
    from raylessons.serving.app import build_app

    _, result = sweep
    export = result["best"]["export"]
    build_app({"exports": {"planet": export}})  # the Serve application accepts it (meta checked)
    img = str(next((Path(planet_dir) / "train-jpg").glob("*.jpg")))
    probs = ray.get(ray.remote(num_cpus=0)(replica_probs).remote(export, img))
    local = Predictor.from_export(export)
    assert probs == pytest.approx(local.forward([local.prepare(img)[0]])[0].tolist(), abs=1e-5)
    assert len(probs) == len(local.classes) and all(0 <= p <= 1 for p in probs)


def test_errors_before_any_trial(ray_session, planet_dir, tmp_path):
    from raylessons.sweep import run_sweep

    with pytest.raises(ConfigError, match="does not report 'dice'; it reports train_loss, valid_loss"):
        run_sweep(_cfg(planet_dir, tmp_path, metric="dice"))
    with pytest.raises(ConfigError, match="names layer group -4, but the planet model has 3 layer groups"):
        run_sweep(_cfg(planet_dir, tmp_path, schedules=[[-1, -4, "all"]]))
    with pytest.raises(ConfigError, match="search space is empty: no ratio"):
        run_sweep(_cfg(planet_dir, tmp_path, ratios=[]))
    with pytest.raises(ConfigError, match="budget of 3 cannot give each of the 4 stages"):
        run_sweep(_cfg(planet_dir, tmp_path, schedules=["gradual"]))
    with pytest.raises(ConfigError, match=r"guide_clamp must be \[low, high\]"):
        run_sweep(_cfg(planet_dir, tmp_path, guide_clamp=[0.1, 0.01]))
    with pytest.raises(ConfigError, match=r"finder_iters must be >= 20: .* got 10"):
        run_sweep(_cfg(planet_dir, tmp_path, finder_iters=10))
    assert not list(tmp_path.iterdir())  # nothing started: no experiment, no finder, no trial


def test_a_finders_error_reaches_the_user_as_itself(ray_session, planet_dir, tmp_path):
    """A ConfigError raised inside a finder's Ray task (here: a curve of 3 batches) is raised as the ConfigError,
    its message alone, not inside Ray's wrapper with the remote traceback (which the CLI would print)."""
    from raylessons.sweep.finder import run_finders

    with pytest.raises(ConfigError) as err:
        run_finders("planet", {"data": str(planet_dir), "size": 32, "bs": 16, "arch": "resnet18"}, tmp_path,
                    num_it=3)
    assert type(err.value) is ConfigError
    assert str(err.value).startswith("the frozen LR finder stopped after 3 batches")
    assert "Traceback" not in str(err.value) and "ray::" not in str(err.value)


def _finished_trials(exp: Path) -> dict[str, int]:
    """{trial dir: lines of result.json} of trials that ran their 2 epochs."""
    out = {}
    for res in exp.glob("sweep_trial_*/result.json"):
        lines = [json.loads(line) for line in res.read_text().splitlines() if line.strip()]
        if lines and lines[-1].get("training_iteration") == 2:
            out[res.parent.name] = len(lines)
    return out


def test_a_killed_sweep_resumes_and_keeps_finished_trials(sweep, planet_dir, tmp_path):
    import shutil

    from raylessons.sweep import experiment_name, run_sweep
    from raylessons.sweep.finder import FINDERS_FILE

    # a randomly sampled space: a restored sweep must not draw new plans for the trials it had
    cfg = _cfg(planet_dir, tmp_path, trials=2, max_concurrent=1, scheduler="fifo", epochs=2)
    exp = tmp_path / experiment_name(cfg)
    exp.mkdir()
    # same task and finder options as the module's sweep: its finder results are reused (only trials run here)
    shutil.copy(Path(sweep[1]["path"]) / FINDERS_FILE, exp / FINDERS_FILE)
    script = tmp_path / "driver.py"
    script.write_text(f"import json\nfrom raylessons.sweep import SweepConfig, run_sweep\n"
                      f"run_sweep(SweepConfig(**json.loads({json.dumps(json.dumps(cfg.__dict__))})))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": "local"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not _finished_trials(exp) and time.time() < deadline and proc.poll() is None:
            time.sleep(1)
        finished_before = _finished_trials(exp)
        assert finished_before, "no trial finished before the deadline"
        plans_before = {p.parent.name: p.read_text() for p in exp.glob("sweep_trial_*/plan.json")}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started, mid-sweep
        proc.wait()
    assert len(finished_before) < 2  # killed with work left
    result = run_sweep(cfg)  # same options, same name: Tuner.restore
    assert len(result["rows"]) == 2 and all(r["status"] == "finished" for r in result["rows"])
    after = _finished_trials(exp)
    for trial, n_lines in finished_before.items():  # finished trials were kept, not re-run
        assert after[trial] == n_lines
    # exactly two trials ran, one per sampled plan: every trial started before the kill (the one in flight
    # included) kept its plan, none was re-sampled, and no plan ran twice to completion
    assert len(after) == 2 and len(list(exp.glob("sweep_trial_*/result.json"))) == 2
    plans_after = {p.parent.name: p.read_text() for p in exp.glob("sweep_trial_*/plan.json")}
    assert plans_before and all(plans_after[t] == plan for t, plan in plans_before.items())
    assert len(plans_after) == 2 and len(set(plans_after.values())) == 2


def test_a_trial_can_run_ddp_on_ray_train_workers(sweep, planet_dir, tmp_path):
    import shutil

    from raylessons.sweep import experiment_name, run_sweep
    from raylessons.sweep.finder import FINDERS_FILE

    cfg = _cfg(planet_dir, tmp_path, trials=1, max_concurrent=1, configs=POINTS[:1], scheduler="fifo", epochs=2,
               workers_per_trial=2)
    exp = tmp_path / experiment_name(cfg)
    exp.mkdir()
    shutil.copy(Path(sweep[1]["path"]) / FINDERS_FILE, exp / FINDERS_FILE)
    result = run_sweep(cfg)
    (row,) = result["rows"]
    assert row["status"] == "finished" and row["epochs"] == 2  # Tune saw both epochs through TuneReportCallback
    (run,) = (exp / "train").glob("train-*")
    assert json.loads((run / "run.json").read_text())["num_workers"] == 2
    assert json.loads((run / "run.json").read_text())["plan"][1]["max_lr"] == "slice(0.0002, 0.002)"
    assert (Path(result["best"]["export"]) / "meta.json").is_file()
