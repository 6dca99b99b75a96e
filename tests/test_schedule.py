"""One-cycle, slice expansion and LR-finder schedules against fastai v1's formulas."""
import math

import numpy as np
import pytest

from raylessons.recorder import suggest_lr
from raylessons.schedule import SmoothenValue, lr_find_schedule, lr_range, one_cycle_schedule


def cos_anneal(start, end, pct):
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def fastai_v1_lr(i, n, lr_max, div=25.0, pct_start=0.3, final_div=None):
    """Closed form of fastai v1's OneCycleScheduler: the lr in force at batch i of n."""
    final_div = div * 1e4 if final_div is None else final_div
    a1 = int(n * pct_start)
    a2 = n - a1
    if i <= a1:
        return cos_anneal(lr_max / div, lr_max, i / a1)
    return cos_anneal(lr_max, lr_max / final_div, (i - a1) / a2)


def fastai_v1_mom(i, n, moms=(0.95, 0.85), pct_start=0.3):
    a1 = int(n * pct_start)
    if i <= a1:
        return cos_anneal(moms[0], moms[1], i / a1)
    return cos_anneal(moms[1], moms[0], (i - a1) / (n - a1))


@pytest.mark.parametrize("n,pct", [(100, 0.3), (37, 0.3), (50, 0.9), (12, 0.8)])
def test_one_cycle_matches_fastai_per_step(n, pct):
    lr_max = np.array([1e-4, 1e-3, 1e-2])
    lrs, moms = one_cycle_schedule(n, lr_max, pct_start=pct)
    assert len(lrs) == len(moms) == n
    for i in range(n):
        expected = [fastai_v1_lr(i, n, m, pct_start=pct) for m in lr_max]
        np.testing.assert_allclose(lrs[i], expected, rtol=1e-12)
        assert moms[i] == pytest.approx(fastai_v1_mom(i, n, pct_start=pct), rel=1e-12)


def test_one_cycle_landmarks():
    lrs, moms = one_cycle_schedule(100, np.array([1e-2]))
    last = [float(lr[0]) for lr in lrs]
    assert last[0] == pytest.approx(4e-4)          # max / 25
    assert int(np.argmax(last)) == 30              # peak at pct_start * n
    assert last[30] == pytest.approx(1e-2)
    # v1 anneals to max / (25 * 1e4) and the last batch sits one step before the end
    assert last[99] == pytest.approx(cos_anneal(1e-2, 1e-2 / 2.5e5, 69 / 70))
    assert moms[0] == pytest.approx(0.95) and moms[30] == pytest.approx(0.85)
    assert min(moms) == pytest.approx(0.85)


def test_slice_expansion():
    np.testing.assert_allclose(lr_range(slice(0.01), 3), [1e-3, 1e-3, 1e-2])
    np.testing.assert_allclose(lr_range(slice(1e-5, 2e-3), 3), [1e-5, math.sqrt(1e-5 * 2e-3), 2e-3])
    np.testing.assert_allclose(lr_range(slice(1e-2 / 2.6 ** 4, 1e-2), 5),
                               [1e-2 / 2.6 ** (4 - i) for i in range(5)])
    np.testing.assert_allclose(lr_range(3e-3, 3), [3e-3] * 3)
    np.testing.assert_allclose(lr_range([1e-5, 1e-4, 1e-3], 3), [1e-5, 1e-4, 1e-3])
    with pytest.raises(ValueError, match="3 layer groups"):
        lr_range([1e-3, 1e-2], 3)


def test_lr_find_schedule_is_exponential():
    sched = lr_find_schedule(1e-7, 10, 100)
    assert sched[0] == pytest.approx(1e-7)
    assert sched[50] == pytest.approx(1e-7 * (1e8) ** 0.5)
    ratios = np.array(sched[1:]) / np.array(sched[:-1])
    np.testing.assert_allclose(ratios, 10 ** 0.08)


def test_smoothed_loss_is_debiased():
    s = SmoothenValue(0.98)
    assert s.add_value(2.0) == pytest.approx(2.0)  # debiasing: the first value is the value itself
    v = s.add_value(4.0)
    assert v == pytest.approx((0.98 * 0.02 * 2 + 0.02 * 4) / (1 - 0.98 ** 2))


def test_suggestion_is_steepest_descent():
    lrs = np.logspace(-7, 1, 100)
    # loss falls fastest around lr=1e-3 (a logistic step in log-lr), then explodes
    x = np.log10(lrs)
    losses = 2 - 1 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -0.5, (x + 0.5) ** 2, 0)
    steepest, min_div_10 = suggest_lr(lrs, losses)
    assert 10 ** -3.2 < steepest < 10 ** -2.8
    assert min_div_10 == pytest.approx(lrs[np.argmin(losses[10:95]) + 10] / 10)
