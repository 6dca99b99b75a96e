"""Interpretation: confusion matrices and top losses against direct counts and recomputed losses, per-tag
thresholds against the global one, segmentation IoU, point errors in the original image's pixels."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from raylessons.data.labels import CategoryLabel, MultiCategoryLabel
from raylessons.data.spatial import SegmentationLabel
from raylessons.data.transforms import points_from_unit
from raylessons.errors import ConfigError, DataError
from raylessons.interpret import (ClassificationInterpretation, Interpretation, MultiLabelInterpretation,
                                  PointsInterpretation, SegmentationInterpretation)
from raylessons.metrics import fbeta


def _fake_learn(label, **data):
    return SimpleNamespace(data=SimpleNamespace(label=label, valid_ds=None, **data), export_extra={})


def test_confusion_matrix_and_most_confused_equal_a_direct_count():
    classes = ["cat", "dog", "fox", "owl"]
    g = torch.Generator().manual_seed(0)
    targs = torch.randint(0, 4, (300,), generator=g)
    probs = torch.softmax(torch.randn(300, 4, generator=g) + 2 * F.one_hot(targs, 4), dim=1)
    interp = ClassificationInterpretation(_fake_learn(CategoryLabel([], classes)), probs, targs,
                                          torch.zeros(300), list(range(300)))
    direct = np.zeros((4, 4), dtype=int)
    for a, p in zip(targs.tolist(), probs.argmax(1).tolist()):
        direct[a, p] += 1
    assert (interp.confusion_matrix() == direct).all() and direct.sum() == 300
    expected = sorted(((classes[a], classes[p], int(direct[a, p])) for a in range(4) for p in range(4)
                       if a != p and direct[a, p] >= 3), key=lambda t: -t[2])
    assert [t[2] for t in interp.most_confused(3)] == [t[2] for t in expected]
    assert set(interp.most_confused(3)) == set(expected) and len(expected) >= 2
    assert all(n >= 3 for _, _, n in interp.most_confused(3))


def test_per_tag_thresholds_never_lower_f2_and_find_a_better_threshold():
    classes = [f"t{i}" for i in range(6)]
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        targs = (torch.rand(200, 6, generator=g) < 0.3).float()
        probs = (0.5 * targs + 0.6 * torch.rand(200, 6, generator=g)).clamp(0, 1)
        interp = MultiLabelInterpretation(_fake_learn(MultiCategoryLabel([], classes)), probs, targs,
                                          torch.zeros(200), list(range(200)))
        chosen = interp.optimal_thresholds(verbose=False)
        assert set(chosen) == set(classes)
        assert interp.fbeta(chosen) >= interp.fbeta() - 1e-7
        # the interpretation's F2 is the training metric's
        assert interp.fbeta(chosen) == pytest.approx(float(fbeta(probs, targs, thresh=torch.tensor(
            [chosen[c] for c in classes]), sigmoid=False)), abs=1e-6)
    # tag t0: negatives at 0.3 and positives at 0.5; the global 0.2 takes every item, a threshold in (0.3, 0.5) is
    # right for t0 and raises F2
    targs = torch.zeros(100, 6)
    targs[:, 1] = 1
    targs[:50, 0] = 1
    probs = torch.full((100, 6), 0.05)
    probs[:, 1] = 0.9
    probs[:, 0] = torch.where(targs[:, 0] > 0, 0.5, 0.3)
    interp = MultiLabelInterpretation(_fake_learn(MultiCategoryLabel([], classes)), probs, targs,
                                      torch.zeros(100), list(range(100)))
    chosen = interp.optimal_thresholds(verbose=False)
    assert 0.3 <= chosen["t0"] < 0.5 and interp.fbeta(chosen) == pytest.approx(1.0)
    assert interp.fbeta() == pytest.approx(0.5 * 1 + 0.5 * (5 * 0.5 * 1 / (4 * 0.5 + 1)), abs=1e-6)
    table = interp.per_tag(chosen).set_index("tag")
    assert table.loc["t0", "precision"] == pytest.approx(1.0) and table.loc["t0", "support"] == 50
    assert interp.per_tag().set_index("tag").loc["t0", "precision"] == pytest.approx(0.5)


def test_segmentation_counts_ignore_void_and_give_iou():
    classes = ["Sky", "Road", "Void"]
    label = SegmentationLabel([], classes)
    g = torch.Generator().manual_seed(0)
    targs = torch.randint(0, 3, (4, 6, 8), generator=g)
    pred_ids = torch.where(torch.rand(4, 6, 8, generator=g) < 0.7, targs, torch.randint(0, 3, (4, 6, 8),
                                                                                        generator=g))
    probs = F.one_hot(pred_ids, 3).permute(0, 3, 1, 2).float()
    interp = SegmentationInterpretation(_fake_learn(label), probs, targs, torch.zeros(4), list(range(4)))
    keep = targs != 2
    direct = np.zeros((3, 3), dtype=int)
    for a, p in zip(targs[keep].tolist(), pred_ids[keep].tolist()):
        direct[a, p] += 1
    assert (interp.confusion_matrix() == direct).all() and direct[2].sum() == 0
    assert interp.pixel_accuracy() == pytest.approx((pred_ids[keep] == targs[keep]).float().mean().item())
    iou = interp.per_class_iou().set_index("class")
    assert "Void" not in iou.index
    sky_inter = ((pred_ids == 0) & (targs == 0) & keep).sum().item()
    sky_union = (((pred_ids == 0) | (targs == 0)) & keep).sum().item()
    assert iou.loc["Sky", "iou"] == pytest.approx(sky_inter / sky_union)
    frame_acc = [(pred_ids[i][keep[i]] == targs[i][keep[i]]).float().mean().item() for i in range(4)]
    assert interp.frame_accuracy().tolist() == pytest.approx(frame_acc)
    assert [acc for _, acc in interp.worst_frames(2)] == pytest.approx(sorted(frame_acc)[:2])


@pytest.fixture(scope="module")
def planet_learn(planet_dir):
    from raylessons.tasks.planet import Config, build_data, build_learner

    torch.manual_seed(0)
    cfg = Config(data=str(planet_dir), size=32, bs=16, arch="resnet18")
    return build_learner(build_data(cfg), cfg)


def test_planet_top_losses_are_sorted_and_match_recomputed_losses(planet_learn, tmp_path):
    interp = Interpretation.from_learner(planet_learn)
    assert isinstance(interp, MultiLabelInterpretation) and len(interp) == len(planet_learn.data.valid_ds)
    losses, positions = interp.top_losses()
    assert (losses[:-1] >= losses[1:]).all() and sorted(positions.tolist()) == list(range(len(interp)))
    # each item's loss recomputed from its own forward pass: BCE of the item's logits against its tags
    planet_learn.model.eval()
    for pos in positions[:3].tolist():
        x, y = interp.item(pos)
        xb, yb = planet_learn.data.to_device(x[None], y[None], planet_learn.device, False)
        with torch.no_grad():
            logits = planet_learn.model(xb)
        assert float(F.binary_cross_entropy_with_logits(logits, yb)) == pytest.approx(float(interp.losses[pos]),
                                                                                     rel=1e-4)
        assert torch.sigmoid(logits)[0] == pytest.approx(interp.preds[pos], abs=1e-5)
    assert interp.plot_top_losses(4, tmp_path / "top.png").stat().st_size > 5000
    assert interp.fbeta() == pytest.approx(planet_learn.validate()[1][1], abs=1e-5)  # the learner's fbeta


def test_per_tag_thresholds_travel_with_the_export(planet_learn, tmp_path):
    from raylessons.inference import Predictor
    from raylessons.learner import load_learner

    interp = Interpretation.from_learner(planet_learn)
    chosen = interp.optimal_thresholds(verbose=False)
    assert interp.fbeta(chosen) >= interp.fbeta()
    export = planet_learn.export(tmp_path / "export", extra={"thresholds": chosen})
    assert json.loads((export / "meta.json").read_text())["thresholds"] == chosen
    image = planet_learn.data.valid_ds.items[0]
    predictor = Predictor.from_export(export)
    tags, mask, probs = predictor.predict(image)
    assert tags == [c for c in predictor.classes if float(probs[predictor.classes.index(c)]) > chosen[c]]
    assert predictor.predict(image, threshold=0.2)[0] == [c for c, p in zip(predictor.classes, probs.tolist())
                                                          if p > 0.2]
    assert load_learner(export).predict(image)[0] == tags
    bad = tmp_path / "bad"
    shutil.copytree(export, bad)
    for thresholds, message in (({"primary": 1.5}, r"thresholds\['primary'\] must be a number in \[0, 1\]"),
                                ({"moon": 0.3}, r"thresholds\['moon'\]: 'moon' is not one of the export's classes"),
                                ([0.2], "'thresholds' must map tags to thresholds")):
        meta = json.loads((export / "meta.json").read_text())
        (bad / "meta.json").write_text(json.dumps({**meta, "thresholds": thresholds}))
        with pytest.raises(DataError, match=message):
            Predictor.from_export(bad)
        with pytest.raises(DataError, match=message):
            planet_learn.export(tmp_path / "refused", extra={"thresholds": thresholds})
    assert not (tmp_path / "refused" / "meta.json").exists()


def test_text_top_losses_follow_the_sorted_loader(tmp_path):
    from raylessons.data.synth.imdb import synth
    from raylessons.data.text import TextList
    from raylessons.text_learner import AWD_LSTM, text_classifier_learner

    torch.manual_seed(0)
    root = synth(tmp_path / "imdb", n_train=16, n_test=12, n_unsup=0, n_sample=0)
    data = (TextList.from_folder(root).split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]).databunch(bs=4))
    learn = text_classifier_learner(data, AWD_LSTM, config=dict(emb_sz=16, n_hid=24, n_layers=2), bptt=10)
    interp = Interpretation.from_learner(learn)
    assert isinstance(interp, ClassificationInterpretation) and sorted(interp.idxs) == list(range(12))
    assert interp.idxs != list(range(12))  # the valid loader sorts by length: positions are not indices
    probs_of_actual = interp.preds[torch.arange(12), interp.targs]
    assert interp.losses.tolist() == pytest.approx((-probs_of_actual.log()).tolist(), abs=1e-4)
    assert [int(data.valid_ds[i][1]) for i in interp.idxs] == interp.targs.tolist()
    learn.model.eval()
    for pos in range(0, 12, 4):  # a batch's longest review has no padding: forwarded alone, it gives the same loss
        x, y = data.valid_ds[interp.idxs[pos]]
        learn.model.reset()
        with torch.no_grad():
            logits = learn.model(x[None])
        assert float(F.cross_entropy(logits, y[None])) == pytest.approx(float(interp.losses[pos]), abs=1e-4)
    assert interp.confusion_matrix().sum() == 12
    assert interp.plot_top_losses(3, tmp_path / "top.png").stat().st_size > 5000
    assert interp.plot_confusion_matrix(tmp_path / "cm.png").stat().st_size > 5000


def test_segmentation_and_points_from_learners(tmp_path):
    from raylessons.data.synth import synth
    from raylessons.tasks import camvid, head_pose

    torch.manual_seed(0)
    root = synth("camvid", tmp_path / "camvid", n=8, size=(48, 64), seed=0)
    cfg = camvid.Config(data=str(root), size=[32, 48], bs=8, arch="resnet18")
    learn = camvid.build_learner(camvid.build_data(cfg), cfg)
    interp = Interpretation.from_learner(learn)
    assert isinstance(interp, SegmentationInterpretation)
    # one valid batch: the pixel accuracy of the whole set is the learner's metric (acc ignoring Void)
    assert interp.pixel_accuracy() == pytest.approx(learn.validate()[1][0], abs=1e-5)
    assert interp.plot_worst_frames(2, tmp_path / "worst.png").stat().st_size > 5000
    assert interp.plot_confusion_matrix(tmp_path / "cm.png").stat().st_size > 5000

    root = synth("biwi", tmp_path / "biwi", persons=13, frames=2, seed=0)
    cfg = head_pose.Config(data=str(root), size=[24, 32], bs=4, arch="resnet18")
    learn = head_pose.build_learner(head_pose.build_data(cfg), cfg)
    interp = Interpretation.from_learner(learn)
    assert isinstance(interp, PointsInterpretation)
    ds = learn.data.valid_ds
    for pos in range(len(interp)):  # the prediction in the original image's pixels vs the label file's point
        i = interp.idxs[pos]
        with Image.open(ds.items[i]) as im:
            hw = (im.size[1], im.size[0])
        got = points_from_unit(interp.preds[pos].reshape(-1, 2), hw)
        assert float(interp.errors()[pos]) == pytest.approx(float((got - ds.label.raw[i]).norm(dim=1).mean()),
                                                            rel=1e-4)
    summary = interp.error_summary()
    assert summary["items"] == len(interp) and summary["max"] == pytest.approx(float(interp.errors().max()))
    assert interp.worst(1)[0][1] == pytest.approx(summary["max"])
    assert interp.plot_worst(2, tmp_path / "worst_points.png").stat().st_size > 5000
    assert interp.plot_errors(tmp_path / "errors.png").stat().st_size > 5000


def test_what_has_no_interpretation_is_refused(planet_learn):
    with pytest.raises(ConfigError, match="ds_type must be 'valid'"):
        Interpretation.from_learner(planet_learn, ds_type="train")
    with pytest.raises(ConfigError, match="no interpretation for 'multi_category' labels in SegmentationInter"):
        SegmentationInterpretation.from_learner(planet_learn)
