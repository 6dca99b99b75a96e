"""Metrics and losses on hand-computed cases."""
import math
from functools import partial

import pytest
import torch

from raylessons.metrics import (BCEWithLogitsFlat, CrossEntropyFlat, MSELossFlat, accuracy_ignoring,
                                accuracy_thresh, fbeta, metric_name)


def logit(p):
    return math.log(p / (1 - p))


def test_accuracy_thresh_counts_every_element():
    probs = torch.tensor([[0.9, 0.1, 0.3], [0.1, 0.6, 0.15]])
    targ = torch.tensor([[1, 0, 0], [0, 1, 1]])
    x = torch.logit(probs)
    # thresh 0.2: preds [[1,0,1],[0,1,0]] vs targ -> 4 of 6 agree
    assert accuracy_thresh(x, targ, thresh=0.2).item() == pytest.approx(4 / 6)
    # thresh 0.5: preds [[1,0,0],[0,1,0]] -> 5 of 6 agree
    assert accuracy_thresh(x, targ).item() == pytest.approx(5 / 6)
    assert accuracy_thresh(probs, targ, thresh=0.5, sigmoid=False).item() == pytest.approx(5 / 6)


def test_fbeta_per_sample_average():
    # sample 1: pred {0, 2}, true {0}: tp 1, prec 1/2, rec 1 -> F2 = 5*0.5*1/(4*0.5+1) = 2.5/3
    # sample 2: pred {1}, true {1, 2}: tp 1, prec 1, rec 1/2 -> F2 = 5*0.5/(4+0.5) = 2.5/4.5
    # sample 3: nothing predicted, true {0}: 0
    probs = torch.tensor([[0.9, 0.1, 0.3], [0.1, 0.6, 0.15], [0.1, 0.1, 0.1]])
    targ = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 0, 0]])
    expected = (2.5 / 3 + 2.5 / 4.5 + 0) / 3
    assert fbeta(torch.logit(probs), targ).item() == pytest.approx(expected, rel=1e-6)
    # beta=1 on sample 1 alone: 2*0.5*1/(0.5+1) = 2/3
    assert fbeta(torch.logit(probs[:1]), targ[:1], beta=1).item() == pytest.approx(2 / 3, rel=1e-6)


def test_partial_metrics_keep_their_names():
    assert metric_name(partial(fbeta, thresh=0.2)) == "fbeta"
    assert metric_name(partial(accuracy_thresh, thresh=0.2)) == "accuracy_thresh"


def test_accuracy_ignoring_void():
    acc = accuracy_ignoring(void_code=2)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = logits[0, 1, 1, 0] = logits[0, 0, 1, 1] = 5.0
    pred_map = torch.tensor([[0, 1], [1, 0]])
    assert torch.equal(logits.argmax(1)[0], pred_map)
    target = torch.tensor([[[0, 0], [2, 2]]])  # two void pixels ignored; of the rest one is right
    assert acc(logits, target).item() == pytest.approx(0.5)
    assert acc(logits, torch.tensor([[[2, 2], [2, 2]]])).item() == 0.0


def test_flat_losses():
    x, y = torch.randn(4, 3), torch.randint(0, 2, (4, 3))
    assert BCEWithLogitsFlat()(x, y).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(x, y.float()).item())
    seg, t = torch.randn(2, 5, 3, 4), torch.randint(0, 5, (2, 3, 4))
    assert CrossEntropyFlat(axis=1)(seg, t).item() == pytest.approx(torch.nn.functional.cross_entropy(seg, t).item(), rel=1e-6)
    p, q = torch.randn(3, 2), torch.randn(3, 2)
    assert MSELossFlat()(p, q).item() == pytest.approx(((p - q) ** 2).mean().item())
