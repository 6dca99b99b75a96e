"""unet_learner's model: fastai v1's DynamicUnet on a torchvision resnet body, split into 3 layer groups.

Defaults follow fastai v1's unet_learner: norm_type=None (decoder convs are conv with bias -> ReLU, no
normalisation), blur=False, blur_final=True, self_attention=False, y_range=None, last_cross=True, bottle=False.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cnn import arch_name, create_body

__all__ = ["icnr_", "PixelShuffle_ICNR", "UnetBlock", "ResBlock", "DynamicUnet", "encoder_sizes",
           "skip_indices", "create_unet_model", "unet_split"]


def conv_layer(ni: int, nf: int, ks: int = 3) -> nn.Sequential:
    """fastai v1's conv_layer with norm_type=None: conv (bias, kaiming-normal weight, zero bias) -> ReLU."""
    conv = nn.Conv2d(ni, nf, ks, padding=ks // 2, bias=True)
    nn.init.kaiming_normal_(conv.weight)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


def batchnorm_2d(nf: int) -> nn.BatchNorm2d:
    """BatchNorm2d with weight 1 and bias 1e-3 (fastai v1's batchnorm_2d)."""
    bn = nn.BatchNorm2d(nf)
    nn.init.ones_(bn.weight)
    nn.init.constant_(bn.bias, 1e-3)
    return bn


def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR init in place: kaiming on (out/scale², in, k, k), each filter repeated for its scale² sub-pixels."""
    base = nn.init.kaiming_normal_(weight.new_empty(weight.shape[0] // scale**2, *weight.shape[1:]))
    with torch.no_grad():
        # PixelShuffle sends channels r²k … r²k+r²-1 to the sub-pixels of output channel k
        weight.copy_(base.repeat_interleave(scale**2, dim=0))
    return weight


class PixelShuffle_ICNR(nn.Module):
    """1×1 conv to nf·scale² channels (ICNR init) -> ReLU -> PixelShuffle, optionally blurred."""

    def __init__(self, ni: int, nf: int | None = None, scale: int = 2, blur: bool = False):
        super().__init__()
        nf = nf or ni
        self.conv = nn.Conv2d(ni, nf * scale**2, 1, bias=True)
        icnr_(self.conv.weight, scale)
        nn.init.zeros_(self.conv.bias)
        self.relu = nn.ReLU(inplace=True)
        self.shuf = nn.PixelShuffle(scale)
        # blur = ReplicationPad2d((1,0,1,0)) + AvgPool2d(2, stride 1): keeps the size, smooths checkerboards
        self.blur = nn.Sequential(nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)) if blur else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shuf(self.relu(self.conv(x)))  # (B, ni, H, W) -> (B, nf, 2H, 2W)
        return self.blur(x) if self.blur is not None else x


class UnetBlock(nn.Module):
    """Upsample, resize to the skip, cat[up, BN(skip)], ReLU, two conv3×3+ReLU; the final block halves nf."""

    def __init__(self, up_in_c: int, x_in_c: int, final: bool = False, blur: bool = False):
        super().__init__()
        self.shuf = PixelShuffle_ICNR(up_in_c, up_in_c // 2, blur=blur)
        self.bn = batchnorm_2d(x_in_c)
        ni = up_in_c // 2 + x_in_c
        self.nf = ni // 2 if final else ni  # fastai's final_div=not final
        self.relu = nn.ReLU(inplace=True)
        self.conv1, self.conv2 = conv_layer(ni, self.nf), conv_layer(self.nf, self.nf)

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(up_in)  # (B, up_in_c//2, 2h, 2w)
        if up.shape[-2:] != skip.shape[-2:]:  # odd sizes: the encoder rounded up when it halved
            up = F.interpolate(up, size=skip.shape[-2:], mode="nearest")
        x = self.relu(torch.cat([up, self.bn(skip)], dim=1))  # (B, ni, H', W')
        return self.conv2(self.conv1(x))  # (B, nf, H', W')


class ResBlock(nn.Module):
    """x + (conv3×3+ReLU, conv3×3+ReLU)(x): fastai v1's res_block(nf) with norm_type=None."""

    def __init__(self, nf: int):
        super().__init__()
        self.convs = nn.Sequential(conv_layer(nf, nf), conv_layer(nf, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convs(x)


def _in_channels(encoder: nn.Module) -> int:
    return next(m for m in encoder.modules() if isinstance(m, nn.Conv2d)).in_channels


def encoder_sizes(encoder: nn.Sequential, size: tuple[int, int] = (64, 64)) -> list[tuple[int, int, int]]:
    """(C, H, W) after each child of `encoder` for a dummy 1×C×size input, run in eval mode."""
    was_training, sizes = encoder.training, []
    device = next(encoder.parameters()).device
    encoder.eval()
    with torch.no_grad():
        x = torch.zeros(1, _in_channels(encoder), *size, device=device)
        for layer in encoder:
            x = layer(x)
            sizes.append(tuple(x.shape[1:]))
    encoder.train(was_training)
    return sizes


def skip_indices(sizes: list[tuple[int, int, int]]) -> list[int]:
    """Indices of the children whose output is the last one before a change of spatial size."""
    return [i for i in range(len(sizes) - 1) if sizes[i][1:] != sizes[i + 1][1:]]


class DynamicUnet(nn.Module):
    """fastai v1's DynamicUnet: encoder, BN+ReLU, middle convs, one UnetBlock per skip, full-res head."""

    def __init__(self, encoder: nn.Sequential, n_classes: int, blur: bool = False, blur_final: bool = True,
                 dummy_size: tuple[int, int] = (64, 64)):
        super().__init__()
        self.encoder = encoder
        sizes = encoder_sizes(encoder, dummy_size)
        # a plain list (no hooks, no buffer): forward keeps these children's outputs; resnets give [2, 4, 5, 6]
        self.skip_idxs = skip_indices(sizes)
        ni = sizes[-1][0]
        self.bn, self.relu = batchnorm_2d(ni), nn.ReLU(inplace=True)
        self.middle = nn.Sequential(conv_layer(ni, ni * 2), conv_layer(ni * 2, ni))
        blocks, up_c = [], ni
        for i, idx in enumerate(reversed(self.skip_idxs)):  # deepest skip first
            final = i == len(self.skip_idxs) - 1
            blocks.append(UnetBlock(up_c, sizes[idx][0], final=final, blur=blur and (not final or blur_final)))
            up_c = blocks[-1].nf
        self.blocks = nn.ModuleList(blocks)
        self.shuf = PixelShuffle_ICNR(up_c)  # the shallowest skip is at /2: one more ×2 to full size
        n_cross = up_c + _in_channels(encoder)  # MergeLayer(dense): cat with the input image
        self.res = ResBlock(n_cross)
        self.final_conv = nn.Conv2d(n_cross, n_classes, 1, bias=True)
        nn.init.kaiming_normal_(self.final_conv.weight)
        nn.init.zeros_(self.final_conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, h = [], x
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i in self.skip_idxs:
                skips.append(h)
        h = self.middle(self.relu(self.bn(h)))  # (B, 512, H/32, W/32) for resnet34
        for block, skip in zip(self.blocks, reversed(skips)):
            h = block(h, skip)  # (B, 96, H/2, W/2) after the last block for resnet34
        h = self.shuf(h)  # (B, 96, ~H, ~W)
        if h.shape[-2:] != x.shape[-2:]:
            h = F.interpolate(h, size=x.shape[-2:], mode="nearest")
        h = self.res(torch.cat([h, x], dim=1))  # (B, 99, H, W)
        return self.final_conv(h)  # (B, n_classes, H, W)


def create_unet_model(arch: str, n_out: int, pretrained=False, blur: bool = False,
                      blur_final: bool = True) -> DynamicUnet:
    """A DynamicUnet on create_body(arch, pretrained) with n_out output channels."""
    return DynamicUnet(create_body(arch_name(arch), pretrained), n_out, blur=blur, blur_final=blur_final)


def unet_split(model: DynamicUnet) -> list[nn.Module]:
    """3 groups: encoder conv1…layer2, encoder layer3…layer4, everything after the encoder."""
    decoder = nn.ModuleList([m for name, m in model.named_children() if name != "encoder"])
    return [nn.Sequential(*model.encoder[:6]), nn.Sequential(*model.encoder[6:]), decoder]
