"""Lesson 3's unfrozen-stage lr rule: find_knee / suggest_slice on synthetic and real finder curves, and plots."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from raylessons.errors import ConfigError
from raylessons.learner import Learner
from raylessons.recorder import plot_finder, suggest_lr
from raylessons.schedule import SliceSuggestion, find_knee, suggest_slice
from raylessons.tasks import planet

PNG = b"\x89PNG\r\n\x1a\n"
LRS = np.logspace(-7, 1, 100)
STEP = LRS[1] / LRS[0]  # one grid step of the sweep
TRIMMED = LRS[10:-5]    # what the default skip_start=10, skip_end=5 keep


def noisy_flat(lrs, seed=0):
    return 1.0 + np.random.default_rng(seed).normal(0, 1e-3, len(lrs))


def cliff(lrs=LRS):
    """Flat (1.0 ± 1e-3) up to lr=1e-3, then a cliff: +3 within a few tenths of a decade, then a plateau."""
    x = np.log10(lrs) + 3
    return np.where(x <= 0, noisy_flat(lrs), 1 + 3 * np.tanh(np.clip(x, 0, None) / 0.3))


def test_knee_of_a_cliff_and_the_slice_around_it():
    losses = cliff()
    knee = find_knee(LRS, losses)
    assert knee / 2 <= 1e-3 <= knee * 2 and knee > 1e-3  # first point past the flat part's end
    s = suggest_slice(LRS, losses, stage1_lr=1e-2)
    assert s.knee == knee and s.lower == knee / 10 and 1e-4 / 2 <= s.lower <= 1e-4 * 2
    assert s.upper == 1e-2 / 5 and s.stage1_lr == 1e-2 and s.divisor == 5.0
    s10 = suggest_slice(LRS, losses, stage1_lr=1e-2, divisor=10)
    assert s10.upper == 1e-2 / 10 and s10.lower == s.lower and s10.knee == knee
    assert s.as_slice() == slice(s.lower, s.upper)
    assert json.loads(json.dumps(s.to_dict())) == {"lower": s.lower, "upper": s.upper, "knee": knee,
                                                   "stage1_lr": 1e-2, "divisor": 5.0}
    with pytest.raises(AttributeError):
        s.lower = 1.0  # frozen


def test_knee_is_relative_to_the_total_climb():
    """Flat then 1 + 20·(log10 lr + 3)²: the knee is where the loss has climbed `rise` of the way to its max,
    i.e. at log10(knee) + 3 = sqrt(rise) · (log10(max trimmed lr) + 3) — not at the start of the rise."""
    x = np.log10(LRS) + 3
    losses = np.where(x <= 0, noisy_flat(LRS), 1 + 20 * np.clip(x, 0, None) ** 2)
    x_max = np.log10(TRIMMED[-1]) + 3
    for rise in (0.1, 0.3):
        expected = 10 ** (np.sqrt(rise) * x_max - 3)
        knee = find_knee(LRS, losses, rise=rise)
        assert expected <= knee < expected * STEP


def test_dip_then_explode():
    """2.0 falling to 0.5 at lr=1e-2, then 0.5 + 2·(log10 lr + 2)²: the knee lies after the minimum."""
    lrs = np.logspace(-6, 0, 100)
    x = np.log10(lrs) + 2
    losses = np.where(x <= 0, 0.5 - 1.5 * x / 4, 0.5 + 2 * np.clip(x, 0, None) ** 2)
    s = suggest_slice(lrs, losses, stage1_lr=0.1)
    lr_min = lrs[10:-5][np.argmin(losses[10:-5])]
    assert lr_min / STEP <= 1e-2 <= lr_min * STEP and s.knee > lr_min
    expected = 10 ** (np.sqrt(0.1) * (np.log10(lrs[-6]) + 2) - 2)
    assert expected <= s.knee < expected * (lrs[1] / lrs[0])
    assert s.lower == s.knee / 10 and s.upper == 0.1 / 5 and s.lower < s.upper


def test_no_knee_when_the_loss_never_rises():
    lrs = np.logspace(-7, -2, 80)
    falling = np.linspace(2.0, 0.5, 80)
    assert find_knee(lrs, falling) is None
    s = suggest_slice(lrs, falling, stage1_lr=1.0)
    assert s.knee is None and s.lower == lrs[10:-5].max() / 10 and s.upper == 0.2
    assert find_knee(LRS, noisy_flat(LRS)) is None  # climbs only by the noise: < min_rise · |min|
    assert find_knee(LRS, noisy_flat(LRS), min_rise=0) is not None
    # stand-in knee (largest trimmed lr ≈ 3.9) / 10 is not below upper = 2e-3: lower = upper / 10
    s = suggest_slice(LRS, noisy_flat(LRS), stage1_lr=1e-2)
    assert s.knee is None and TRIMMED.max() / 10 >= s.upper and s.lower == s.upper / 10


def test_lower_capped_below_upper():
    s = suggest_slice(LRS, cliff(), stage1_lr=1e-4)  # knee / 10 ≈ 1e-4 >= upper = 2e-5
    assert s.knee / 10 >= s.upper and s.lower == s.upper / 10 == 1e-4 / 5 / 10


def test_non_finite_tail_ends_the_curve():
    losses = cliff()
    knee = find_knee(LRS, losses, skip_end=0)
    lrs = np.concatenate([LRS, LRS[-1] * STEP ** np.arange(1, 9)])
    for bad in (np.nan, np.inf):
        # skip_end=5 drops the last 5 of 108 points; the curve then ends at `bad`, so the 1e9 is never seen
        tail = np.concatenate([losses, [bad, 1e9, bad, bad, bad, bad, bad, bad]])
        assert find_knee(lrs, tail) == knee
        assert suggest_slice(lrs, tail, stage1_lr=1e-2) == suggest_slice(LRS, losses, 1e-2, skip_end=0)
    # a NaN just before the cliff ends the curve there: nothing after it counts
    assert find_knee(LRS, np.concatenate([losses[:10], [1.0] * 40, [np.nan], losses[51:]])) is None


def test_bad_input():
    with pytest.raises(ValueError, match="too few"):
        find_knee(LRS[:16], cliff()[:16])
    with pytest.raises(ValueError, match="too few"):
        suggest_slice(LRS, np.concatenate([cliff()[:11], [np.nan] * 89]), stage1_lr=1e-2)
    with pytest.raises(ValueError, match="same length"):
        find_knee(LRS, cliff()[:-1])
    for kw, name in [({"stage1_lr": 0}, "stage1_lr"), ({"stage1_lr": -1e-2}, "stage1_lr"),
                     ({"stage1_lr": float("nan")}, "stage1_lr"), ({"stage1_lr": 1e-2, "divisor": 0}, "divisor"),
                     ({"stage1_lr": 1e-2, "divisor": float("inf")}, "divisor"),
                     ({"stage1_lr": 1e-2, "rise": 0}, "rise")]:
        with pytest.raises(ConfigError, match=name):
            suggest_slice(LRS, cliff(), **kw)


def test_plot_finder_marks_both(tmp_path):
    losses = np.append(cliff(), [np.nan, np.inf])
    lrs = np.append(LRS, [20.0, 40.0])
    steepest, _ = suggest_lr(lrs[:100], losses[:100])
    s = suggest_slice(lrs, losses, stage1_lr=1e-2)
    out = plot_finder(list(lrs), list(losses), tmp_path / "sub" / "both.png", steepest=steepest, slice_suggestion=s)
    assert out == tmp_path / "sub" / "both.png" and out.read_bytes()[:8] == PNG and out.stat().st_size > 1000
    none = SliceSuggestion(1e-5, 1e-4, None, 5e-4, 5.0)
    assert plot_finder(lrs, losses, tmp_path / "none.png", slice_suggestion=none).read_bytes()[:8] == PNG


@pytest.fixture
def one_thread():
    """A model this small runs ~10x faster on one intra-op thread than on two busy ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_real_finder_run_after_unfreezing(planet_dir, tmp_path, one_thread):
    """A tiny 2-group CNN on the Planet look-alike: unfreeze, lr_find, then the lesson's slice."""
    d = planet.build_data(planet.Config(data=str(planet_dir), size=16, bs=16))
    torch.manual_seed(2)
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
    learn = Learner(d, nn.Sequential(body, nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, d.c))),
                    splitter=lambda m: [m[0], m[1]], device="cpu")
    learn.freeze()
    learn.unfreeze()
    learn.lr_find(num_it=60, end_lr=1000)
    rec = learn.recorder
    s = suggest_slice(rec.lrs, rec.losses, stage1_lr=1e-2)
    assert 0 < s.lower < s.upper == 1e-2 / 5
    if s.knee is not None:
        lrs, losses = np.array(rec.lrs[10:-5]), np.array(rec.losses[10:-5])
        assert s.knee > lrs[np.nanargmin(losses)]
    stand_in = s.knee if s.knee is not None else max(rec.lrs[10:-5])
    assert s.lower == (stand_in / 10 if stand_in / 10 < s.upper else s.upper / 10)
    assert rec.plot_slice(tmp_path / "f.png", 1e-2) == s
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG and (tmp_path / "f.png").stat().st_size > 1000
