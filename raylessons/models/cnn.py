"""cnn_learner's model: a torchvision resnet body and fastai v1's head, split into 3 layer groups."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from ..errors import DownloadError

__all__ = ["ARCHS", "AdaptiveConcatPool2d", "create_body", "create_head", "create_cnn_model", "resnet_split",
           "load_pretrained"]

# name -> (builder, torchvision weights enum name, features out of the body)
ARCHS = {
    "resnet18": (torchvision.models.resnet18, "ResNet18_Weights", 512),
    "resnet34": (torchvision.models.resnet34, "ResNet34_Weights", 512),
    "resnet50": (torchvision.models.resnet50, "ResNet50_Weights", 2048),
}


class AdaptiveConcatPool2d(nn.Module):
    """Max pooling and average pooling to 1×1, concatenated (max first): 2·C features."""

    def __init__(self):
        super().__init__()
        self.mp, self.ap = nn.AdaptiveMaxPool2d(1), nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)  # (B, 2C, 1, 1)


def arch_name(arch) -> str:
    """The registry name of an architecture given as a name or a torchvision builder."""
    name = arch if isinstance(arch, str) else getattr(arch, "__name__", str(arch))
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHS)}")
    return name


def load_pretrained(arch: str, pretrained) -> nn.Module:
    """A torchvision resnet with ImageNet weights (True), a local weights file (path) or none (False)."""
    builder, weights_name, _ = ARCHS[arch]
    if pretrained is True:
        weights = getattr(torchvision.models, weights_name).IMAGENET1K_V1
        try:
            return builder(weights=weights)
        except Exception as e:  # urllib errors differ by Python version; all mean "could not fetch"
            raise DownloadError(
                f"could not fetch torchvision's ImageNet weights for {arch} ({type(e).__name__}: {e}). "
                f"This machine may be offline: download {weights.url} elsewhere and pass "
                f"pretrained='/path/to/{Path(weights.url).name}', or use pretrained=False") from None
    model = builder(weights=None)
    if pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
    return model


def create_body(arch: str, pretrained=False) -> nn.Sequential:
    """The resnet without its pooling and classifier: children()[:-2]."""
    return nn.Sequential(*list(load_pretrained(arch, pretrained).children())[:-2])


def create_head(nf: int, nc: int, lin_ftrs: list[int] | None = None, ps: float = 0.5,
                concat_pool: bool = True, bn_final: bool = False) -> nn.Sequential:
    """fastai v1's head: concat pool, flatten, [BN, dropout, linear, ReLU]… then the classifier."""
    ftrs = [nf] + (lin_ftrs or [512]) + [nc]
    ps_list = [ps / 2] * (len(ftrs) - 2) + [ps]
    layers: list[nn.Module] = [AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for i, (n_in, n_out, p) in enumerate(zip(ftrs[:-1], ftrs[1:], ps_list)):
        last = i == len(ftrs) - 2
        layers += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out)]
        if not last:
            layers.append(nn.ReLU(inplace=True))
    if bn_final:
        layers.append(nn.BatchNorm1d(ftrs[-1], momentum=0.01))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def create_cnn_model(arch: str, n_out: int, pretrained=False, ps: float = 0.5,
                     lin_ftrs: list[int] | None = None) -> nn.Sequential:
    """body + head as one Sequential: model[0] is the body, model[1] the head."""
    arch = arch_name(arch)
    body = create_body(arch, pretrained)
    nf = ARCHS[arch][2] * 2  # concat pooling doubles the features
    return nn.Sequential(body, create_head(nf, n_out, lin_ftrs, ps))


def resnet_split(model: nn.Sequential) -> list[nn.Module]:
    """3 groups: conv1…layer2, layer3…layer4, the head (fastai's _resnet_split)."""
    body, head = model[0], model[1]
    return [nn.Sequential(*body[:6]), nn.Sequential(*body[6:]), head]
