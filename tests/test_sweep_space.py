"""Search spaces around the LR finders' guides, and unfreezing schedules as plans (no trials run here)."""
import math

import numpy as np
import pytest

from raylessons.errors import ConfigError
from raylessons.plan import parse_plan
from raylessons.sweep.space import ULMFIT_RATIO, build_space, check_schedule, plan_from_config, split_epochs


def _samples(domain, n=2000, seed=0):
    """n draws from a Tune domain, seeded so that a statistical assertion gives the same answer every run."""
    return np.array(domain.sample(size=n, random_state=np.random.default_rng(seed)), dtype=float)


def test_rates_are_log_uniform_inside_their_bands():
    space = build_space(frozen_lr=2e-2, upper=4e-3, band=3.0, ratios=(10.0, ULMFIT_RATIO))
    s1, up = _samples(space["stage1_lr"]), _samples(space["upper"])
    assert s1.min() >= 2e-2 / 3 and s1.max() <= 2e-2 * 3
    assert up.min() >= 4e-3 / 3 and up.max() <= 4e-3 * 3
    # log-uniform: the log-median is the guide and each half-decade of the band holds its share
    assert np.median(np.log(s1)) == pytest.approx(math.log(2e-2), abs=0.08)
    assert np.mean(s1 < 2e-2) == pytest.approx(0.5, abs=0.05)
    assert set(_samples(space["ratio"], 300)) == {10.0, ULMFIT_RATIO}


def test_the_lessons_rates_stretch_the_bands():
    """With the lesson's rates, each band runs from the lower of (guide, lesson rate) / band to the higher * band,
    log-uniform over the whole range; a lesson rate inside the band changes nothing."""
    space = build_space(frozen_lr=1e-4, upper=2e-5, band=3.0, lesson={"stage1_lr": 2e-2, "upper": 1e-5})
    s1, up = _samples(space["stage1_lr"], 20000), _samples(space["upper"])
    assert s1.min() >= 1e-4 / 3 and s1.max() <= 2e-2 * 3 and s1.max() > 1e-2  # reaches the lesson's 2e-2
    assert np.median(np.log(s1)) == pytest.approx(math.log(math.sqrt(1e-4 * 2e-2)), abs=0.15)
    assert up.min() >= 1e-5 / 3 and up.max() <= 2e-5 * 3 and up.min() < 1e-5 / 2
    inside = build_space(frozen_lr=1e-2, upper=1e-3, band=3.0, lesson={"stage1_lr": 1.5e-2, "upper": 1e-3})
    assert (inside["stage1_lr"].lower, inside["stage1_lr"].upper) == pytest.approx((1e-2 / 3, 1.5e-2 * 3))
    with pytest.raises(ConfigError, match="frozen .stage-1. lesson rate must be a positive learning rate"):
        build_space(1e-2, 1e-3, lesson={"stage1_lr": -1.0, "upper": 1e-3})


def test_single_choices_are_constants_and_options_are_searched():
    space = build_space(1e-2, 1e-3, schedules="gradual", ratios=[ULMFIT_RATIO], stage1_fracs=[0.5],
                        pct_start=[0.3, 0.8], moms=[(0.95, 0.85), (0.8, 0.7)], wd=(1e-3, 1e-1))
    assert space["schedule"] == "gradual" and space["ratio"] == ULMFIT_RATIO and space["stage1_frac"] == 0.5
    assert set(_samples(space["pct_start"], 200)) == {0.3, 0.8}
    assert {tuple(space["moms"].sample()) for _ in range(200)} == {(0.95, 0.85), (0.8, 0.7)}
    wd = _samples(space["wd"], 500)
    assert wd.min() >= 1e-3 and wd.max() <= 1e-1


@pytest.mark.parametrize("kwargs, names", [
    (dict(band=1.0), "band"),
    (dict(ratios=[]), "ratio"),
    (dict(schedules=[]), "schedule"),
    (dict(stage1_fracs=[]), "stage1_frac"),
    (dict(schedules=["sideways"]), "sideways"),
    (dict(ratios=[0.5]), "ratio"),
    (dict(wd=(1e-1, 1e-3)), "wd"),
])
def test_empty_or_invalid_spaces_are_refused(kwargs, names):
    with pytest.raises(ConfigError, match=names):
        build_space(1e-2, 1e-3, **kwargs)


def test_guides_must_be_positive():
    with pytest.raises(ConfigError, match="unfrozen"):
        build_space(1e-2, float("nan"))


def _finder_curve(flat: bool, rises: bool = True):
    """A smoothed LR-finder curve over 1e-7..1: falling by half around 1e-3 (or flat, within 1 % noise), then
    shooting up past 4e-3 (to about 4x its minimum at 1) unless `rises` is False."""
    lrs = np.logspace(-7, 0, 60)
    x = np.log10(lrs)
    base = 1.7 + 0.01 * np.sin(7 * x) if flat else 2.0 - 1.0 / (1 + np.exp(-3 * (x + 3)))
    rise = np.clip((x - math.log10(4e-3)) / -math.log10(4e-3), 0, None) ** 2 * 3 * 1.7 if rises else 0
    return list(lrs), list(base + rise)


def test_the_frozen_guide_is_the_steepest_slope_of_a_falling_curve():
    from raylessons.sweep.finder import frozen_guide

    lrs, losses = _finder_curve(flat=False)
    found = frozen_guide(lrs, losses, clamp=(1e-6, 1.0))
    assert found["rule"] == "steepest" and found["descent"] > 0.4
    assert found["guide"] == found["steepest"] and 10 ** -3.3 < found["guide"] < 10 ** -2.7


def test_a_flat_curves_frozen_guide_is_a_decade_before_the_loss_shoots_up():
    """A frozen random body under a fresh head: the loss stays within noise until it shoots up. Its steepest
    slope is noise; the guide is the knee / 10 (the lesson's rule), clamped like the steepest slope."""
    from raylessons.schedule import find_knee
    from raylessons.sweep.finder import MIN_DESCENT, frozen_guide

    lrs, losses = _finder_curve(flat=True)
    found = frozen_guide(lrs, losses, clamp=(1e-6, 1.0))
    knee = find_knee(lrs, losses, skip_end=0)
    assert found["descent"] < MIN_DESCENT and found["rule"] == "knee / 10"
    assert 4e-3 < knee < 1e-1 and found["knee"] == knee and found["guide"] == pytest.approx(knee / 10)
    assert found["steepest"] < 1e-4  # where the noise happened to dip: what the old guide would have been
    assert frozen_guide(lrs, losses, clamp=(1e-2, 1e-1))["guide"] == 1e-2  # clamped
    diverged = losses[:-8] + [float("nan")] * 8  # a finder that ran into NaN: the same rule on what is finite
    assert frozen_guide(lrs, diverged, clamp=(1e-6, 1.0))["rule"] == "knee / 10"
    # a flat curve that never shoots up has no knee: the steepest slope stays (clamped)
    lrs, losses = _finder_curve(flat=True, rises=False)
    found = frozen_guide(lrs, losses, clamp=(1e-4, 1e-1))
    assert found["rule"] == "steepest" and found["knee"] is None
    assert found["guide"] == min(max(found["steepest"], 1e-4), 1e-1)


def test_a_finder_that_stopped_early_still_gives_a_guide_or_a_clear_error():
    """lr_find stops once the loss passes 4x its best. On CamVid's frozen U-Net (20 batches) that came after 16
    points, and fastai's trim (10 + 5) left one: the sweep died with a ValueError from inside a Ray task. A short
    curve keeps all but its first quarter, so the rise it found is read; one too short to read is a ConfigError."""
    from raylessons.sweep.finder import finder_skips, frozen_guide

    lrs, losses = _finder_curve(flat=False)
    lrs, losses = lrs[::4], losses[::4]  # 15 points over 1e-7..1: falling around 1e-3, shooting up past 4e-3
    assert len(lrs) == 15 and finder_skips(15, "frozen") == (3, 0) and finder_skips(20, "frozen") == (10, 5)
    found = frozen_guide(lrs, losses, clamp=(1e-6, 1.0))
    assert found["rule"] == "steepest" and 1e-4 < found["guide"] < 4e-3  # in the fall, before the rise
    with pytest.raises(ValueError, match="too few"):  # what the sweep used to die of
        from raylessons.recorder import suggest_lr
        suggest_lr(lrs, losses)
    with pytest.raises(ConfigError, match="the frozen LR finder stopped after 3 batches"):
        frozen_guide(lrs[:3], losses[:3], clamp=(1e-6, 1.0))


def test_the_finders_line_says_which_rule_gave_the_guide_and_whether_the_clamp_moved_it():
    from raylessons.sweep.finder import frozen_guide
    from raylessons.sweep.run import finders_line

    unfrozen = {"lower": 6e-4, "upper": 6e-3, "knee": 0.8576958985908946}
    lrs, losses = _finder_curve(flat=True)
    for clamp, clamped in (((1e-6, 1.0), False), ((1e-2, 1e-1), True)):
        found = frozen_guide(lrs, losses, clamp=clamp)
        line = finders_line(found, unfrozen, clamp)
        assert line.startswith(f"LR finders: frozen guide {found['guide']:.3g} (flat curve: knee {found['knee']:.3g}"
                               " / 10")
        assert ("clamped to [0.01, 0.1]" in line) == clamped
        assert line.endswith("unfrozen slice(0.0006, 0.006) (knee 0.858)")
    steep = {"rule": "steepest", "steepest": 0.251, "guide": 0.03, "knee": None}
    assert finders_line(steep, {**unfrozen, "knee": None}, [1e-4, 0.03]) == (
        "LR finders: frozen guide 0.03 (steepest 0.251, clamped to [0.0001, 0.03]); unfrozen slice(0.0006, 0.006) "
        "(no knee: the loss never shot up)")


def test_two_stage_plan_is_the_lessons_recipe():
    plan = plan_from_config({"schedule": "two_stage", "stage1_lr": 0.01, "upper": 0.002, "ratio": 100.0,
                             "stage1_frac": 0.25}, total_epochs=8, n_groups=3)
    assert plan == [{"freeze": True, "max_lr": "slice(0.01)", "epochs": 2},
                    {"unfreeze": True, "max_lr": "slice(2e-05, 0.002)", "epochs": 6}]
    stages = parse_plan(plan, 3)
    assert [s.freezing() for s in stages] == [-1, 0]


def test_ulmfit_gradual_plan_unfreezes_one_group_per_epoch():
    plan = plan_from_config({"schedule": "gradual", "stage1_lr": 2e-2, "upper": 1e-3, "ratio": ULMFIT_RATIO,
                             "moms": (0.8, 0.7)}, total_epochs=4, n_groups=5)
    assert [p.get("freeze_to", "all" if p.get("unfreeze") else -1) for p in plan] == [-1, -2, -3, "all"]
    assert [p["epochs"] for p in plan] == [1, 1, 1, 1] and all(p["moms"] == [0.8, 0.7] for p in plan)
    stages = parse_plan(plan, 5)
    tops = [s.max_lr.stop for s in stages]
    assert tops[0] == pytest.approx(2e-2) and tops[-1] == pytest.approx(1e-3)
    assert tops == sorted(tops, reverse=True)  # each unfrozen stage goes lower
    for s in stages[1:]:  # slice(lr / 2.6**4, lr)
        assert s.max_lr.stop / s.max_lr.start == pytest.approx(ULMFIT_RATIO, rel=1e-4)


def test_all_at_once_and_list_schedules():
    plan = plan_from_config({"schedule": "all", "stage1_lr": 1e-2, "upper": 1e-3}, total_epochs=3)
    assert plan == [{"unfreeze": True, "max_lr": "slice(0.0001, 0.001)", "epochs": 3}]
    plan = plan_from_config({"schedule": [-1, -2, "all"], "stage1_lr": 1e-2, "upper": 1e-3,
                             "stage1_frac": 0.5}, total_epochs=6, n_groups=3)
    assert [p["epochs"] for p in plan] == [3, 1, 2]


def test_schedules_are_checked_against_the_models_groups():
    assert check_schedule("gradual", 5) == [-1, -2, -3, "all"]
    with pytest.raises(ConfigError, match=r"layer group -3, but the planet model has 2 layer groups"):
        check_schedule("gradual", 2, "the planet model")
    with pytest.raises(ConfigError, match="not a layer group"):
        check_schedule([-1, 2], 3)
    with pytest.raises(ConfigError, match="unknown schedule"):
        plan_from_config({"schedule": "backwards", "stage1_lr": 1, "upper": 1}, 4)


def test_epoch_budget_split():
    assert split_epochs(2, 8, 0.25) == [2, 6]
    assert split_epochs(2, 3, 0.9) == [2, 1]   # the last stage keeps an epoch
    assert split_epochs(4, 6) == [1, 1, 2, 2]  # the unfrozen stages get the remainder
    with pytest.raises(ConfigError, match="budget of 3 cannot give each of the 4 stages"):
        split_epochs(4, 3)


def test_sweep_command_line_maps_onto_the_config(tmp_path):
    import argparse

    from raylessons.sweep.cli import add_sweep_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_sweep_arguments(parser)
    args = parser.parse_args(["--task", "imdb_clas", "--data", str(tmp_path), "--ratios", "2.6**4,10",
                              "--schedules", '["gradual", [-1, "all"]]', "--trials", "6", "--epochs", "4",
                              "--set", "lm_export=/x/export", "--set", "drop_mult=0.3", "--workers-per-trial", "2"])
    cfg = config_from_args(args)
    assert cfg.ratios == [pytest.approx(ULMFIT_RATIO), 10.0]
    assert cfg.schedules == ["gradual", [-1, "all"]]
    assert (cfg.task, cfg.trials, cfg.epochs, cfg.workers_per_trial) == ("imdb_clas", 6, 4, 2)
    # only the options given: imdb_clas has no `pretrained` (its encoder comes from lm_export)
    assert cfg.task_config == {"data": str(tmp_path), "lm_export": "/x/export", "drop_mult": 0.3}
    with pytest.raises(SystemExit):
        parser.parse_args(["--task", "planet", "--data", "d", "--ratios", "ten"])


def test_sweep_options_fail_before_ray(tmp_path):
    from raylessons.sweep.config import SweepConfig, check_sweep, experiment_name

    base = dict(task="planet", task_config={"data": str(tmp_path)})
    with pytest.raises(ConfigError, match="DDP trials .* take whole GPUs"):
        check_sweep(SweepConfig(**base, workers_per_trial=2, gpus_per_trial=0.5))
    with pytest.raises(ConfigError, match="unknown scheduler"):
        check_sweep(SweepConfig(**base, scheduler="hyperband"))
    with pytest.raises(ConfigError, match="configs is an empty list"):
        check_sweep(SweepConfig(**base, configs=[]))
    with pytest.raises(ConfigError, match="lacks"):
        check_sweep(SweepConfig(**base, configs=[{"stage1_lr": 1e-2}]))
    with pytest.raises(ConfigError, match="unknown search 'grid'; choose one of random, optuna, qmc"):
        check_sweep(SweepConfig(**base, search="grid"))
    with pytest.raises(ConfigError, match=r"search='optuna' takes named schedules only .* use search='random'"):
        check_sweep(SweepConfig(**base, search="optuna", schedules=["two_stage", [-2, "all"]]))
    with pytest.raises(ConfigError, match=r"search='qmc' takes named schedules only .* use search='random'"):
        check_sweep(SweepConfig(**base, search="qmc", schedules=["two_stage", [-2, "all"]]))
    assert check_sweep(SweepConfig(**base, search="optuna")) == ("fbeta", "max")
    assert check_sweep(SweepConfig(**base, search="qmc")) == ("fbeta", "max")
    assert check_sweep(SweepConfig(**base)) == ("fbeta", "max")
    # the name is a function of the options: same options, same experiment (restore); others, another
    assert experiment_name(SweepConfig(**base)) == experiment_name(SweepConfig(**base, storage_path="/elsewhere"))
    assert experiment_name(SweepConfig(**base)) != experiment_name(SweepConfig(**base, trials=9))
    # retries do not change what is searched: a rerun with --max-failures restores the same experiment
    assert experiment_name(SweepConfig(**base)) == experiment_name(SweepConfig(**base, max_failures=2))
    with pytest.raises(ConfigError, match="max_failures must be >= 0, got -1"):
        check_sweep(SweepConfig(**base, max_failures=-1))


def test_a_tasks_own_options_once_the_task_is_known(tmp_path):
    import argparse
    import dataclasses

    from raylessons.options import peek_option
    from raylessons.sweep.cli import add_sweep_arguments, config_from_args
    from raylessons.sweep.config import SweepConfig

    argv = ["--task", "planet", "--data", str(tmp_path), "--size", "64", "--threshold", "0.3", "--storage", "/s",
            "--set", "seed=7", "--verbose"]
    parser = argparse.ArgumentParser()
    add_sweep_arguments(parser, peek_option(argv, "--task"))
    cfg = config_from_args(parser.parse_args(argv))
    assert cfg.task_config == {"data": str(tmp_path), "size": 64, "threshold": 0.3, "seed": 7}
    assert (cfg.storage_path, cfg.seed, cfg.verbose, cfg.trials) == ("/s", 0, 1, 8)  # --seed is the sweep's
    assert all(f.metadata.get("help") for f in dataclasses.fields(SweepConfig))


@pytest.mark.parametrize("task", ["planet", "camvid", "head_pose", "imdb_clas"])
def test_every_sweep_task_has_a_preset_that_validates(task, tmp_path):
    """`raylessons sweep --task T` with no space options searches T's preset (from the lesson's plan); options
    given on the command line win."""
    import argparse

    from raylessons.sweep.cli import add_sweep_arguments, config_from_args
    from raylessons.sweep.config import PRESET_FIELDS, check_sweep
    from raylessons.tasks import get_task

    parser = argparse.ArgumentParser()
    add_sweep_arguments(parser, task)
    extra = ["--set", "lm_export=/x/export"] if task == "imdb_clas" else []
    cfg = config_from_args(parser.parse_args(["--task", task, "--data", str(tmp_path), *extra]))
    preset = get_task(task).sweep_preset
    assert set(preset) == set(PRESET_FIELDS)
    assert {name: getattr(cfg, name) for name in PRESET_FIELDS} == dict(preset)
    assert check_sweep(cfg) == (get_task(task).metric, get_task(task).mode)
    given = config_from_args(parser.parse_args(["--task", task, "--data", str(tmp_path), "--schedules", "all",
                                                "--ratios", "3", *extra]))
    assert (given.schedules, given.ratios, given.stage1_fracs) == (["all"], [3.0], preset["stage1_fracs"])
    if task == "imdb_clas":  # ULMFiT's recipe is in its space, and one rate for every layer
        assert "gradual" in cfg.schedules and cfg.ratios == [pytest.approx(ULMFIT_RATIO), 1.0]
    with pytest.raises(ConfigError, match="split=test would select it on the held-out test set"):
        check_sweep(config_from_args(parser.parse_args(["--task", task, "--data", str(tmp_path), "--test-pct",
                                                        "0.2", "--split", "test", *extra])))


def _rates(max_lr) -> tuple:
    """(lower, top) of a stage's max_lr: slice(a, b) -> (a, b); slice(b) or b -> (None, b)."""
    return (max_lr.start, max_lr.stop) if isinstance(max_lr, slice) else (None, max_lr)


@pytest.mark.parametrize("task", ["planet", "camvid", "head_pose", "imdb_clas"])
def test_the_lesson_trial_is_the_lessons_plan(task):
    """A sweep's first trial (`lesson_trial`) is the notebook's plan at its first image size: the same stages,
    freezing, epochs, first-stage rate and last stage's slice (ULMFiT's middle stages: log-spaced tops)."""
    from raylessons.tasks import get_task

    t = get_task(task)
    lesson = t.first_size_plan()
    epochs = sum(s["epochs"] for s in lesson)
    ours, theirs = parse_plan(plan_from_config(t.lesson_trial, epochs)), parse_plan(lesson)
    assert [(s.freezing(), s.epochs) for s in ours] == [(s.freezing(), s.epochs) for s in theirs]
    assert _rates(ours[0].max_lr)[1] == pytest.approx(_rates(theirs[0].max_lr)[1])
    assert _rates(ours[-1].max_lr) == pytest.approx(_rates(theirs[-1].max_lr))
    assert ours[0].pct_start == theirs[0].pct_start and ours[0].moms == theirs[0].moms
    # at a bench's budget: the lesson's stages, epochs in proportion
    assert [s["epochs"] for s in t.first_size_plan(6)] == {"planet": [3, 3], "camvid": [3, 3], "head_pose": [6],
                                                          "imdb_clas": [1, 1, 1, 3]}[task]


def test_the_default_grace_period_waits_until_every_plan_anneals():
    """ASHA's first cut comes once every plan the sweep can run (each schedule at each first-stage share, and the
    lesson's plan) is past the middle of its last stage; an explicit grace period wins."""
    from raylessons.sweep.config import SweepConfig

    def grace(task, epochs=6, **kw):
        return SweepConfig(task=task, task_config={"data": "/d"}, epochs=epochs, **kw).grace_period

    assert grace("planet") == 5        # two_stage at 0.25, 0.5 of 6: [2, 4] -> 2 + 2, [3, 3] -> 3 + 2; all: 3
    assert grace("planet", epochs=12) == 9  # [3, 9] -> 3 + 5, [6, 6] -> 6 + 3
    assert grace("camvid") == 5        # 0.45 of 6: [3, 3]
    assert grace("head_pose") == 3     # head alone, all: 3 (one stage of 6)
    assert grace("imdb_clas", epochs=5) == 4  # gradual [1, 1, 1, 2] -> 3 + 1; two_stage [1, 4] -> 3; all: 3
    assert grace("planet", schedules=["all"], lesson_first=False) == 3
    assert grace("planet", schedules=["head"], epochs=1, lesson_first=False) == 1
    # the lesson's own plan counts even when its schedule is not searched (planet's lesson: [3, 3])
    assert grace("planet", schedules=["all"]) == 5
    assert grace("planet", grace_period=2) == 2


def _drawn(search: str, task: str, seed: int, n: int) -> tuple[list[dict], dict]:
    """The configs a sweep's searcher hands Tune for `task`'s preset space (guides 1e-2 and 2e-3), `n` trials with
    the lesson's first, each reported finished before the next is asked for; and that space."""
    from raylessons.sweep.config import SweepConfig
    from raylessons.sweep.run import _searcher, first_trials
    from raylessons.tasks import get_task

    cfg = SweepConfig(task=task, trials=n, seed=seed, search=search)
    space = build_space(1e-2, 2e-3, band=cfg.band, ratios=cfg.ratios, schedules=cfg.schedules,
                        stage1_fracs=cfg.stage1_fracs, lesson=get_task(task).lesson_trial)
    searcher = _searcher(cfg, first_trials(cfg))
    searcher.set_search_properties("accuracy", "max", space)
    out = []
    for i in range(n):
        out.append(searcher.suggest(f"t{i}"))
        searcher.on_trial_complete(f"t{i}", {"accuracy": 0.5})
    return out, space


def _quarters(configs: list[dict], space: dict, name: str) -> list[int]:
    """Which quarter of `name`'s (log) band each config's value lies in, sorted."""
    lo, hi = math.log(space[name].lower), math.log(space[name].upper)
    return sorted(int(4 * (math.log(c[name]) - lo) / (hi - lo)) for c in configs)


@pytest.mark.parametrize("seed", range(6))
def test_qmc_spreads_four_draws_over_every_band_and_choice(seed):
    """search='qmc': after the lesson's plan, 4 draws from a scrambled Sobol sequence take one rate from each
    quarter of each (log) band and each of the preset's two ratios twice, each ratio once with a high and once with
    a low top rate, for any seed; the same seed draws the same trials (a FIFO rerun of an ASHA sweep runs the same
    configs)."""
    from raylessons.tasks import get_task

    lesson = get_task("camvid").lesson_trial
    configs, space = _drawn("qmc", "camvid", seed, 5)
    assert configs[0] == lesson  # whole
    drawn = configs[1:]
    assert all(set(c) == {"stage1_lr", "upper", "ratio", "schedule"} for c in drawn)  # searched; the rest constant
    for name in ("stage1_lr", "upper"):
        assert _quarters(drawn, space, name) == [0, 1, 2, 3], (name, [c[name] for c in drawn])
    assert sorted(c["ratio"] for c in drawn) == [10.0, 10.0, 100.0, 100.0]
    assert sorted(c["schedule"] for c in drawn) == ["all", "all", "two_stage", "two_stage"]
    # the unfrozen slice jointly: each ratio once with a top rate in the band's upper half and once in its lower
    mid = math.sqrt(space["upper"].lower * space["upper"].upper)
    assert sorted((c["ratio"], c["upper"] > mid) for c in drawn) == [(10.0, False), (10.0, True), (100.0, False),
                                                                     (100.0, True)]
    assert _drawn("qmc", "camvid", seed, 5)[0] == configs


@pytest.mark.parametrize("search", ["qmc", "optuna"])
def test_the_lessons_trial_keeps_a_value_the_space_holds_constant(search):
    """Head pose's preset draws only `all`, while the lesson trains the head alone: Optuna's searchers run the
    lesson's trial whole (Optuna itself would take only the searched keys, and Tune would fill in `all`)."""
    from raylessons.tasks import get_task

    lesson = get_task("head_pose").lesson_trial
    configs, space = _drawn(search, "head_pose", 0, 3)
    assert space["schedule"] == "all" and lesson["schedule"] == "head"
    assert configs[0] == lesson
    assert all("schedule" not in c for c in configs[1:])  # the drawn trials: the constant, `all`


def test_tpes_first_draws_can_miss_a_quarter_of_a_band():
    """What qmc is for: over the same 6 seeds, search='optuna' (TPE, whose first draws are random) leaves a quarter
    of the upper band without a draw in most of the sweeps."""
    missed = 0
    for seed in range(6):
        configs, space = _drawn("optuna", "camvid", seed, 5)
        missed += _quarters(configs[1:], space, "upper") != [0, 1, 2, 3]
    assert missed >= 3


def test_qmc_without_scipy_is_a_clear_error(monkeypatch, tmp_path):
    """search='qmc' needs SciPy's Sobol sequence: without it, a ConfigError naming the package, before Ray starts."""
    import sys

    from raylessons.sweep.config import SweepConfig, check_sweep

    monkeypatch.setitem(sys.modules, "scipy.stats.qmc", None)  # `import scipy.stats.qmc` now fails
    with pytest.raises(ConfigError, match=r"search='qmc' needs the scipy package: pip install 'raylessons\[optuna\]'"):
        check_sweep(SweepConfig(task="planet", task_config={"data": str(tmp_path)}, search="qmc"))
    assert check_sweep(SweepConfig(task="planet", task_config={"data": str(tmp_path)}, search="optuna"))
