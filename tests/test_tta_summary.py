"""learn.TTA (fastai v1's test-time augmentation: 4 corner zooms x 2 flips, points mapped back) and learn.summary
(per-block output shapes and parameters, per-group trainable counts) on a resnet, a U-Net and an AWD-LSTM."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from raylessons.data.bunch import DeviceBatch
from raylessons.data.labels import CategoryLabel
from raylessons.data.spatial import PointsLabel, SegmentationLabel
from raylessons.data.transforms import imagenet_stats, points_to_unit
from raylessons.errors import ConfigError
from raylessons.learner import Learner
from raylessons.metrics import CrossEntropyFlat, MSELossFlat
from raylessons.models.unet import create_unet_model, unet_split
from raylessons.tasks import planet
from raylessons.tta import corner_lo, tta_augmentations, zoom_flip

SCALE = 1.35


class FakeData(DeviceBatch):
    """A DataBunch stand-in: fixed valid batches and a label-kind class."""

    def __init__(self, batches, label, stats=None):
        self.train_dl = self.valid_dl = batches
        self.test_dl = None
        self.label, self.path = label, "."
        if stats is not None:
            self.stats = stats

    @property
    def loss_func(self):
        return self.label.loss_func()

    def one_batch(self, train: bool = False):
        return self.valid_dl[0]


@pytest.fixture(scope="module")
def planet_learn(planet_dir):
    torch.manual_seed(0)
    cfg = planet.Config(data=str(planet_dir), size=32, bs=16, arch="resnet18")
    return planet.build_learner(planet.build_data(cfg), cfg)


# ----- TTA
def hand_zoom(x: torch.Tensor, scale: float, row_pct: int, col_pct: int, flip: bool) -> torch.Tensor:
    """The corner zoom written out: each output pixel samples the source bilinearly at the centre it covers."""
    def axis(n: int, pct: int):
        start = 0.0 if pct == 0 else n - n / scale  # the window's first edge, in pixel edges (0 .. n)
        p = (start + (torch.arange(n, dtype=torch.float64) + 0.5) / scale - 0.5).clamp(0, n - 1)
        i0 = p.floor().long()
        return i0, (i0 + 1).clamp(max=n - 1), (p - i0).to(x.dtype)

    (r0, r1, wr), (c0, c1, wc) = axis(x.shape[-2], row_pct), axis(x.shape[-1], col_pct)
    rows = x[:, :, r0] * (1 - wr)[:, None] + x[:, :, r1] * wr[:, None]
    out = rows[..., c0] * (1 - wc) + rows[..., c1] * wc
    return out.flip(-1) if flip else out


def test_the_eight_passes_are_fastais_corners_and_flips():
    augs = tta_augmentations()
    assert augs[:4] == [(0, 0, False), (1, 0, False), (0, 1, False), (1, 1, False)]
    assert sorted(augs) == sorted((r, c, f) for r in (0, 1) for c in (0, 1) for f in (False, True))
    assert corner_lo(0, 2.0) == -1.0 and corner_lo(1, 2.0) == 0.0


def test_zoom_flip_is_the_corner_crop_resized_back():
    x = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    for row, col, flip in tta_augmentations():
        torch.testing.assert_close(zoom_flip(x, SCALE, row, col, flip), hand_zoom(x, SCALE, row, col, flip),
                                   atol=1e-5, rtol=0)
    torch.testing.assert_close(zoom_flip(x, 1.0, 1, 0, False), x, atol=1e-5, rtol=0)  # scale 1: the image itself
    # scale 2 on an even size: the top-left quarter, each pixel doubled (inside the quarter's inner edges)
    top_left = torch.nn.functional.interpolate(x[..., :10, :14], size=(20, 28), mode="bilinear", align_corners=False)
    torch.testing.assert_close(zoom_flip(x, 2.0, 0, 0, False)[..., :-1, :-1], top_left[..., :-1, :-1])


def test_tta_is_beta_times_plain_plus_the_mean_of_the_augmented_passes(planet_learn):
    learn = planet_learn
    final, targs = learn.TTA()
    plain, ptargs = learn.get_preds()
    assert final.shape == plain.shape and torch.equal(targs, ptargs)
    again, _ = learn.TTA()
    assert torch.equal(final, again)  # deterministic
    preds, avg, _ = learn.TTA(beta=None)
    torch.testing.assert_close(preds, plain)
    torch.testing.assert_close(final, 0.4 * plain + 0.6 * avg)
    assert not torch.allclose(avg, plain, atol=1e-3)  # the passes do see other images

    xb, yb = learn.data.one_batch()  # the first valid batch, recomputed by hand
    xb, _ = learn.data.to_device(xb, yb, learn.device)
    learn.model.eval()
    with torch.no_grad():
        hand_plain = torch.sigmoid(learn.model(xb))
        passes = [torch.sigmoid(learn.model(hand_zoom(xb, SCALE, r, c, f))) for r, c, f in tta_augmentations()]
    expected = 0.4 * hand_plain + 0.6 * torch.stack(passes).mean(0)
    torch.testing.assert_close(final[:len(xb)], expected, atol=1e-5, rtol=1e-4)
    only = learn.tta_only()
    assert len(only) == 8
    for got, want in zip(only, passes):
        torch.testing.assert_close(got[:len(xb)], want, atol=1e-5, rtol=1e-4)
    final2, _ = learn.TTA(beta=0.1, scale=1.1)
    assert final2.shape == final.shape and not torch.allclose(final2, final)


def test_single_label_tta_averages_softmax_probabilities():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(4, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 0])) for _ in range(2)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    learn = Learner(FakeData(batches, CategoryLabel, stats=imagenet_stats), model)
    final, targs = learn.TTA()
    assert final.shape == (8, 3) and torch.equal(targs, torch.tensor([0, 1, 2, 0] * 2))
    torch.testing.assert_close(final.sum(1), torch.ones(8))


class BrightestPixel(nn.Module):
    """A perfect "head" finder: (row, col) in [-1, 1] of the brightest pixel (channels summed)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        idx = x.sum(1).flatten(1).argmax(1)
        return points_to_unit(torch.stack([idx // w, idx % w], 1).float(), (h, w))


def _dots(n: int, h: int, w: int, seed: int = 0):
    """Black images with one white pixel inside the region every corner window keeps (|unit| < 0.35)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(int(0.65 * h / 2) + 1, int(1.35 * h / 2) - 1, (n,), generator=g)
    cols = torch.randint(int(0.65 * w / 2) + 1, int(1.35 * w / 2) - 1, (n,), generator=g)
    x = torch.zeros(n, 3, h, w)
    x[torch.arange(n), :, rows, cols] = 1.0
    return x, points_to_unit(torch.stack([rows, cols], 1).float(), (h, w))


def test_points_are_mapped_back_to_the_original_image():
    h, w = 32, 48
    x, where = _dots(24, h, w)
    learn = Learner(FakeData([(x[:16], where[:16]), (x[16:], where[16:])], PointsLabel), BrightestPixel(),
                    loss_func=MSELossFlat())
    plain, targs = learn.get_preds()
    torch.testing.assert_close(plain, targs)  # the model is exact on the plain images
    zoomed_pixel = torch.tensor([2 / h, 2 / w]) / SCALE  # one pixel of the zoomed image, in original units
    for (row, col, flip), pred in zip(tta_augmentations(), learn.tta_only()):
        assert ((pred - plain).abs() <= zoomed_pixel).all(), (row, col, flip)
    preds, avg, _ = learn.TTA(beta=None)
    assert ((avg - plain).abs() <= zoomed_pixel).all()
    final, _ = learn.TTA()
    assert ((final - plain).abs() <= zoomed_pixel).all()
    # without the mapping back, the bottom-right flipped pass is off by many pixels
    raw = BrightestPixel()(zoom_flip(x, SCALE, 1, 1, True))
    assert ((raw - where).abs() > 5 * zoomed_pixel).any(dim=1).all()


def test_flipping_and_zooming_points_then_mapping_back_is_exact():
    g = torch.Generator().manual_seed(1)
    unit = torch.rand(10, 3, 2, generator=g) * 2 - 1  # 3 points per item
    for scale in (1.0, SCALE, 2.0):
        for row, col, flip in tta_augmentations():
            lo = torch.tensor([corner_lo(row, scale), corner_lo(col, scale)])
            seen = (unit - lo) * scale - 1  # where the zoomed image shows each point
            if flip:
                seen[..., 1] = -seen[..., 1]
            back = PointsLabel.tta_inverse(seen.reshape(10, 6), flip, float(lo[0]), float(lo[1]), scale)
            torch.testing.assert_close(back, unit.reshape(10, 6), atol=1e-6, rtol=0)
    probs = torch.rand(4, 5, generator=g)
    assert torch.equal(CategoryLabel.tta_inverse(probs, True, 0.0, 0.0, SCALE), probs)


def test_tta_refuses_segmentation_text_and_bad_options():
    batches = [(torch.rand(2, 3, 16, 16), torch.zeros(2, 16, 16, dtype=torch.long))]
    seg = Learner(FakeData(batches, SegmentationLabel), nn.Conv2d(3, 2, 1), loss_func=CrossEntropyFlat(axis=1))
    with pytest.raises(ConfigError, match="image classification, multi-label classification and points.*"
                                          "'segmentation'"):
        seg.TTA()

    class Rnn(nn.Linear):
        def reset(self):
            pass

    text = Learner(FakeData([(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long))],
                            CategoryLabel), Rnn(5, 2))
    with pytest.raises(ConfigError, match="RNN"):
        text.TTA()
    img = Learner(FakeData([(torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))], CategoryLabel),
                  nn.Sequential(nn.Flatten(), nn.Linear(192, 2)))
    with pytest.raises(ConfigError, match="scale"):
        img.TTA(scale=0.5)
    with pytest.raises(ConfigError, match="beta"):
        img.TTA(beta=1.5)
    with pytest.raises(ConfigError, match="no test set"):
        img.TTA(ds_type="test")
    with pytest.raises(ConfigError, match="ds_type"):
        img.TTA(ds_type="train")


# ----- summary
def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_summary_of_a_resnet_matches_the_freezing(planet_learn, capsys):
    learn = planet_learn
    learn.model.train()
    bn = learn.model[0][1]
    stats = bn.running_mean.clone(), int(bn.num_batches_tracked)
    for change in (learn.freeze, learn.unfreeze, lambda: learn.freeze_to(1), lambda: learn.freeze_to(-2)):
        change()
        s = learn.summary()
        assert s.trainable_counts == learn.trainable_counts()
        assert [g.tensors_trainable + g.tensors_frozen for g in s.groups] == [30, 30, 8]
    assert _modes(learn.model) == [True] * len(_modes(learn.model)) and _no_hooks(learn.model)
    assert torch.equal(bn.running_mean, stats[0]) and int(bn.num_batches_tracked) == stats[1]
    learn.model.eval()
    learn.freeze()
    s = learn.summary()
    assert not any(_modes(learn.model))
    assert 10 <= len(s.blocks) <= 30 and {b.group for b in s.blocks} == {0, 1, 2}
    assert s.blocks[0].layer == "Conv2d" and s.blocks[0].trainable == "False"
    assert s.blocks[4].trainable == "partly"  # layer1 of a frozen body: its BatchNorms still train
    assert s.blocks[-1].layer == "Linear" and s.blocks[-1].output_shape == s.output_shape == f"[16, {learn.data.c}]"
    assert s.total_params == sum(p.numel() for p in learn.model.parameters())
    assert s.trainable_params == sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    assert s.frozen_params == sum(g.params_frozen for g in s.groups) > 0
    out = capsys.readouterr().out
    assert "Total trainable params" in out and "Optimizer: AdamW" in out and "Loss function: BCEWithLogitsFlat" in out
    assert str(s) in out


def test_summary_of_a_unet():
    torch.manual_seed(0)
    batches = [(torch.rand(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long))]
    learn = Learner(FakeData(batches, SegmentationLabel), create_unet_model("resnet18", 4),
                    loss_func=CrossEntropyFlat(axis=1), splitter=unet_split)
    learn.freeze()
    s = learn.summary(print_table=False)
    assert s.trainable_counts == learn.trainable_counts()
    assert 10 <= len(s.blocks) <= 30 and all(b.output_shape != "-" for b in s.blocks)
    assert s.output_shape == "[2, 4, 32, 32]" and s.blocks[-1].name == "final_conv"
    assert _no_hooks(learn.model)


def test_summary_of_an_awd_lstm_classifier(tmp_path_factory):
    from raylessons.data.synth.imdb import synth
    from raylessons.data.text import TextList
    from raylessons.text_learner import AWD_LSTM, text_classifier_learner

    imdb = synth(tmp_path_factory.mktemp("imdb"), n_train=40, n_test=16, n_unsup=0, n_sample=4)
    data = (TextList.from_folder(imdb).split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]).databunch(bs=8))
    torch.manual_seed(0)
    learn = text_classifier_learner(data, AWD_LSTM, config=dict(emb_sz=16, n_hid=32, n_layers=2), bptt=20)
    learn.model.train()
    for change in (learn.freeze, lambda: learn.freeze_to(2), learn.unfreeze):
        change()
        s = learn.summary(print_table=False)
        assert s.trainable_counts == learn.trainable_counts()
    assert len(s.groups) == 4 and s.output_shape == "[8, 2]"
    assert [b.layer for b in s.blocks][:3] == ["Embedding", "EmbeddingDropout", "WeightDropout"]
    assert s.blocks[1].output_shape.startswith("[8, 20, 16]")  # the first bptt chunk
    assert all(_modes(learn.model)) and _no_hooks(learn.model)
    assert learn.model[0].module.hidden is None  # reset: no state of the summary's batch left behind
    with pytest.raises(ConfigError, match="RNN"):
        learn.TTA()
