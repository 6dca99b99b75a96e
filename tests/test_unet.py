"""DynamicUnet (fastai v1's defaults), unet_split and unet_learner: shapes, channel flow, ICNR, freezing."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from raylessons.errors import ConfigError
from raylessons.learner import Learner
from raylessons.models import build_model
from raylessons.models.unet import DynamicUnet, PixelShuffle_ICNR, UnetBlock, create_unet_model, icnr_, unet_split
from raylessons.vision_learner import unet_learner

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@pytest.fixture(scope="module")
def unet18() -> DynamicUnet:
    torch.manual_seed(0)
    return create_unet_model("resnet18", 5, pretrained=False).eval()


def _fake_data(tmp_path, c: int = 5) -> SimpleNamespace:
    return SimpleNamespace(c=c, loss_func=nn.CrossEntropyLoss(), path=tmp_path)


@pytest.mark.parametrize("h, w, bs", [(360, 480, 1), (128, 128, 2), (100, 150, 2)])
def test_output_shape_any_size(unet18, h, w, bs):
    with torch.no_grad():
        out = unet18(torch.randn(bs, 3, h, w))
    assert out.shape == (bs, 5, h, w)
    assert torch.isfinite(out).all()


def test_resnet34_channel_flow_and_skips():
    m = create_unet_model("resnet34", 32, pretrained=False)
    assert m.skip_idxs == [2, 4, 5, 6]  # relu (/2), layer1 (/4), layer2 (/8), layer3 (/16)
    assert isinstance(m.skip_idxs, list)
    assert (m.bn.num_features, m.middle[0][0].in_channels, m.middle[0][0].out_channels) == (512, 512, 1024)
    assert (m.middle[1][0].in_channels, m.middle[1][0].out_channels) == (1024, 512)
    assert torch.equal(m.bn.weight, torch.ones(512)) and torch.allclose(m.bn.bias, torch.full((512,), 1e-3))
    # (up_in_c, skip channels, conv1 in, conv1 out = conv2 out)
    flow = [(b.shuf.conv.in_channels, b.bn.num_features, b.conv1[0].in_channels, b.conv2[0].out_channels)
            for b in m.blocks]
    assert flow == [(512, 256, 512, 512), (512, 128, 384, 384), (384, 64, 256, 256), (256, 64, 192, 96)]
    assert all(b.conv2[0].in_channels == b.conv1[0].out_channels for b in m.blocks)
    assert (m.shuf.conv.in_channels, m.shuf.conv.out_channels) == (96, 4 * 96)
    assert m.res.convs[0][0].in_channels == 99 and m.res.convs[1][0].out_channels == 99
    assert (m.final_conv.in_channels, m.final_conv.out_channels, m.final_conv.kernel_size) == (99, 32, (1, 1))
    # fastai v1 defaults: no normalisation in decoder convs (conv with bias), no blur anywhere
    decoder = [mod for name, mod in m.named_modules() if not name.startswith("encoder")]
    assert all(c.bias is not None for c in decoder if isinstance(c, nn.Conv2d))
    assert [type(b) for b in decoder if isinstance(b, _BN)] == [nn.BatchNorm2d] * 5  # post-encoder + 4 skips
    assert all(b.shuf.blur is None for b in m.blocks) and m.shuf.blur is None


def test_blur_only_when_asked():
    m = create_unet_model("resnet18", 3, blur=True, blur_final=False)
    assert [b.shuf.blur is not None for b in m.blocks] == [True, True, True, False]
    m = create_unet_model("resnet18", 3, blur=True, blur_final=True)
    assert all(b.shuf.blur is not None for b in m.blocks)
    assert m(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)


def test_icnr_subpixels_start_equal():
    torch.manual_seed(0)
    w = icnr_(torch.empty(4 * 6, 10, 1, 1))
    for k in range(6):
        for j in range(1, 4):
            assert torch.equal(w[4 * k + j], w[4 * k])
    assert not torch.equal(w[0], w[4])
    assert 0.2 < w.std().item() < 0.7  # kaiming on fan_in 10: std sqrt(2/10) ≈ 0.45
    # so the shuffled output starts as a nearest-neighbour upsampling of ReLU(conv(x))
    ps = PixelShuffle_ICNR(10, 6)
    x = torch.randn(2, 10, 5, 7)
    y = ps(x)
    assert y.shape == (2, 6, 10, 14)
    low = torch.relu(nn.functional.conv2d(x, ps.conv.weight[::4], ps.conv.bias[::4]))
    assert torch.allclose(y, nn.functional.interpolate(low, scale_factor=2, mode="nearest"), atol=1e-6)


def test_unet_block_resizes_to_odd_skip():
    block = UnetBlock(16, 8, final=True)
    out = block(torch.randn(1, 16, 4, 5), torch.randn(1, 8, 7, 10))
    assert out.shape == (1, (8 + 8) // 2, 7, 10)


def test_unet_split_and_freeze(unet18, tmp_path):
    groups = unet_split(unet18)
    assert len(groups) == 3
    ids = [{id(p) for p in g.parameters()} for g in groups]
    assert sum(len(s) for s in ids) == len(set().union(*ids)) == len(list(unet18.parameters()))
    enc = unet18.encoder
    assert {id(p) for p in enc[6:].parameters()} == ids[1] and {id(p) for p in enc[:6].parameters()} == ids[0]

    m = create_unet_model("resnet18", 5)
    learn = Learner(_fake_data(tmp_path), m, splitter=unet_split, device="cpu")
    learn.freeze()
    counts = learn.trainable_counts()
    assert counts[2] == len(list(learn.layer_groups[2].parameters()))
    for g in learn.layer_groups[:2]:
        for mod in g.modules():
            for p in mod.parameters(recurse=False):
                assert p.requires_grad == isinstance(mod, _BN)
    assert 0 < counts[0] < len(list(learn.layer_groups[0].parameters()))
    # one backward: frozen convs get no gradient, BN and the decoder do
    m.train()
    loss = learn.loss_func(m(torch.randn(2, 3, 64, 64)), torch.randint(0, 5, (2, 64, 64)))
    loss.backward()
    for p in m.parameters():
        assert (p.grad is not None) == p.requires_grad
    assert m.encoder[0].weight.grad is None and m.encoder[1].weight.grad is not None


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    m = create_unet_model("resnet18", 4).train()
    out = m(torch.randn(2, 3, 64, 80))
    nn.functional.cross_entropy(out, torch.randint(0, 4, (2, 64, 80))).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_build_model_round_trip():
    spec = {"kind": "unet", "arch": "resnet18", "n_out": 3, "blur": False, "blur_final": True}
    torch.manual_seed(0)
    a, split_a = build_model(spec)
    torch.manual_seed(1)
    b, split_b = build_model(spec)
    assert split_a is unet_split and split_b is unet_split
    x = torch.randn(1, 3, 48, 72)
    a.eval(), b.eval()
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))
        b.load_state_dict(a.state_dict(), strict=True)
        assert torch.equal(a(x), b(x))


def test_unet_learner(tmp_path):
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    data = _fake_data(tmp_path, c=7)
    learn = unet_learner(data, "resnet18", pretrained=weights, device="cpu")
    assert learn.model_meta == {"kind": "unet", "arch": "resnet18", "n_out": 7, "blur": False,
                                "blur_final": True}
    assert learn.model.final_conv.out_channels == 7
    assert learn.trainable_counts()[2] == len(list(learn.layer_groups[2].parameters()))
    assert not learn.model.encoder[0].weight.requires_grad  # frozen at creation
    assert torch.equal(learn.model.encoder[0].weight, torch.load(weights)["conv1.weight"])
    learn = unet_learner(data, torchvision.models.resnet18, pretrained=False, n_out=2, device="cpu")
    assert learn.model.final_conv.out_channels == 2 and learn.model.encoder[0].weight.requires_grad
    with pytest.raises(ConfigError, match="self_attention"):
        unet_learner(data, "resnet18", pretrained=False, self_attention=True)
