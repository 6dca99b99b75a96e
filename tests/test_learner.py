"""The Learner on a tiny Planet look-alike: freezing, one-cycle, lr_find, recorder, save/export/predict."""
import json

import numpy as np
import pytest
import torch

from raylessons.callbacks import Callback
from raylessons.learner import load_learner
from raylessons.schedule import one_cycle_schedule
from raylessons.tasks import planet

# resnet18 parameter tensors per layer group, counted from torchvision's definition:
# group 0 = conv1, bn1, layer1, layer2 (30 tensors, 20 of them BatchNorm);
# group 1 = layer3, layer4 (30, 20 BatchNorm); group 2 = the head (8, 4 BatchNorm)
ALL, FROZEN_BN_ONLY = [30, 30, 8], [20, 20, 8]


@pytest.fixture(scope="module")
def data(planet_dir):
    cfg = planet.Config(data=str(planet_dir), size=32, bs=16, arch="resnet18")
    return planet.build_data(cfg), cfg


def make_learner(data, pretrained=False, **kw):
    torch.manual_seed(0)
    d, cfg = data
    return planet.build_learner(d, cfg, **kw)


def test_layer_groups_and_freezing(data):
    learn = make_learner(data)
    assert len(learn.layer_groups) == 3
    assert learn.trainable_counts() == ALL          # not pretrained: nothing frozen on creation
    learn.freeze()
    assert learn.trainable_counts() == FROZEN_BN_ONLY
    learn.freeze_to(-2)
    assert learn.trainable_counts() == [20, 30, 8]
    learn.unfreeze()
    assert learn.trainable_counts() == ALL
    learn.train_bn = False
    learn.freeze()
    assert learn.trainable_counts() == [0, 0, 8]
    with pytest.raises(ValueError, match="3 layer groups"):
        learn.freeze_to(-4)


def test_frozen_training_moves_only_trainable_tensors(data):
    learn = make_learner(data)
    learn.freeze()
    conv = learn.model[0][0].weight.detach().clone()
    bn = learn.model[0][1].weight.detach().clone()
    head = learn.model[1][-1].weight.detach().clone()
    learn.fit(1, 1e-2)
    assert torch.equal(conv, learn.model[0][0].weight)
    assert not torch.equal(bn, learn.model[0][1].weight)
    assert not torch.equal(head, learn.model[1][-1].weight)


class GroupLrs(Callback):
    """Records each optimizer group's lr and beta1 in force at every training batch."""

    order = 5

    def before_fit(self, learn):
        self.lrs, self.moms = [], []

    def before_batch(self, learn):
        if learn.training:
            self.lrs.append([g["lr"] for g in learn.opt.param_groups])
            self.moms.append(learn.opt.param_groups[0]["betas"][0])


def test_fit_one_cycle_applies_fastai_schedule_per_group(data):
    learn = make_learner(data)
    spy = GroupLrs()
    learn.fit_one_cycle(2, slice(1e-4, 1e-2), callbacks=[spy])
    n = 2 * len(learn.data.train_dl)
    lrs, moms = one_cycle_schedule(n, np.array([1e-4, 1e-3, 1e-2]))
    np.testing.assert_allclose(spy.lrs, np.stack(lrs), rtol=1e-12)
    np.testing.assert_allclose(spy.moms, moms, rtol=1e-12)
    np.testing.assert_allclose(learn.recorder.lrs, np.stack(lrs)[:, -1])
    assert learn.opt.param_groups[0]["weight_decay"] == 1e-2 and learn.opt.param_groups[0]["betas"][1] == 0.99
    assert len(learn.recorder.val_losses) == 2 and len(learn.recorder.metrics[0]) == 2
    assert all(np.isfinite(learn.recorder.losses))


def test_resumed_cycle_continues_the_schedule(data):
    learn = make_learner(data)
    spy = GroupLrs()
    learn.fit_one_cycle(3, 1e-2, callbacks=[spy], start_epoch=2)
    nb = len(learn.data.train_dl)
    lrs, _ = one_cycle_schedule(3 * nb, np.array([1e-2] * 3))
    np.testing.assert_allclose(spy.lrs, np.stack(lrs)[2 * nb:], rtol=1e-12)


def test_lr_find_restores_weights_and_optimizer(data, tmp_path):
    learn = make_learner(data)
    learn.fit(1, 1e-3)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_before = learn.opt.state_dict()["state"][0]["exp_avg"].clone()
    learn.lr_find(num_it=30, end_lr=100)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(learn.opt.state_dict()["state"][0]["exp_avg"], opt_before)
    rec = learn.recorder
    assert 2 <= len(rec.lrs) <= 30
    ratios = np.array(rec.lrs[1:]) / np.array(rec.lrs[:-1])
    np.testing.assert_allclose(ratios, (100 / 1e-7) ** (1 / 30))
    if len(rec.lrs) < 30:  # stopped early: the smoothed loss blew past 4x its best
        assert rec.losses[-1] > 4 * min(rec.losses) or np.isnan(rec.losses[-1])
    steep, min10 = rec.plot(tmp_path / "lr.png", skip_start=0, skip_end=0)
    assert rec.lrs[0] <= steep <= rec.lrs[-1] and (tmp_path / "lr.png").stat().st_size > 1000


def test_recorder_plots(data, tmp_path):
    learn = make_learner(data)
    learn.fit_one_cycle(2, 1e-3)
    for name, fn in [("losses", learn.recorder.plot_losses), ("metrics", learn.recorder.plot_metrics)]:
        assert fn(tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert learn.recorder.plot_lr(tmp_path / "lr.png", show_moms=True).stat().st_size > 1000
    assert learn.recorder.moms[0] == pytest.approx(0.95)


def test_save_load_export_predict(data, tmp_path):
    learn = make_learner(data, path=tmp_path)
    learn.fit_one_cycle(1, 1e-3)
    file = learn.save("stage-1-rn18-32")
    assert file == tmp_path / "models" / "stage-1-rn18-32.pth"
    state = torch.load(file, weights_only=True)  # nothing but tensors and plain containers inside
    assert set(state) == {"model", "opt"}
    other = make_learner(data, path=tmp_path)
    other.load("stage-1-rn18-32")
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, other.model.state_dict()[k])

    export = learn.export(tmp_path / "export")
    meta = json.loads((export / "meta.json").read_text())
    assert meta["task"] == "planet" and meta["label_kind"] == "multi_category" and meta["threshold"] == 0.2
    assert meta["arch"] == "resnet18" and meta["size"] == 32
    assert meta["classes"] == learn.data.classes and meta["normalize"]["mean"] == [0.485, 0.456, 0.406]
    assert "fbeta" in meta["metrics"]
    loaded = load_learner(export)
    img = learn.data.valid_ds.items[0]
    tags, mask, probs = loaded.predict(img)
    tags2, mask2, probs2 = learn.predict(img)
    assert tags == tags2 and torch.allclose(probs, probs2, atol=1e-5)
    assert tags == [c for c, p in zip(meta["classes"], probs.tolist()) if p > 0.2]
    assert mask.dtype == torch.bool and probs.shape == (learn.data.c,)


def test_predict_preprocessing_equals_validation_transforms(data):
    learn = make_learner(data)
    from raylessons.inference import Predictor

    pred = Predictor.from_learner(learn)
    for i in range(3):
        x_valid, _ = learn.data.valid_ds[i]
        assert torch.equal(pred.preprocess(learn.data.valid_ds.items[i]), x_valid)


def test_progressive_resizing_keeps_weights(data):
    d, cfg = data
    learn = make_learner(data)
    learn.fit(1, 1e-3)
    w = learn.model[0][0].weight.detach().clone()
    learn.data = planet.build_data(cfg, size=48)
    assert torch.equal(learn.model[0][0].weight, w)
    learn.fit(1, 1e-3)
    assert learn.data.one_batch()[0].shape[-1] == 48 and not torch.equal(learn.model[0][0].weight, w)


def test_pretrained_weights_file_loads_and_freezes(data, tmp_path):
    import torchvision

    from raylessons.vision_learner import cnn_learner

    torch.manual_seed(1)
    body = torchvision.models.resnet18(weights=None)
    torch.save(body.state_dict(), tmp_path / "resnet18-local.pth")
    learn = cnn_learner(data[0], "resnet18", pretrained=str(tmp_path / "resnet18-local.pth"))
    assert torch.equal(learn.model[0][0].weight, body.conv1.weight)
    assert torch.equal(learn.model[0][7][1].conv2.weight, body.layer4[1].conv2.weight)
    assert learn.trainable_counts() == FROZEN_BN_ONLY  # frozen on creation when pretrained


def test_pretrained_true_offline_is_a_clear_error(data, monkeypatch, tmp_path):
    import urllib.error

    import torchvision.models._api as tv_api

    from raylessons.errors import DownloadError
    from raylessons.vision_learner import cnn_learner

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)  # what torchvision fetches with
    with pytest.raises(DownloadError, match=r"ImageNet weights for resnet34.*offline.*resnet34-.*\.pth"):
        cnn_learner(data[0], "resnet34", pretrained=True)


def test_one_metric_function_and_fp32_without_gradient_scaling(data):
    from raylessons.learner import Learner
    from raylessons.metrics import fbeta

    d, _ = data
    learn = Learner(d, make_learner(data).model, metrics=fbeta)  # fastai's metrics=acc_camvid form
    assert learn.metric_names == ["fbeta"]
    learn.to_fp32()
    assert not learn.mixed_precision and not learn._scaler.is_enabled()


def test_predict_uses_the_tasks_threshold(data):
    learn = make_learner(data)
    learn.export_extra["threshold"] = 0.9
    item = data[0].valid_ds.items[0]
    _, mask, probs = learn.predict(item)
    assert torch.equal(mask, probs > 0.9)
