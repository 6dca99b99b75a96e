"""cnn_learner: the lesson's constructor for image classifiers and regressors."""
from __future__ import annotations

from typing import Callable, Sequence

from .errors import ConfigError
from .learner import Learner
from .models.cnn import arch_name, create_cnn_model, resnet_split
from .models.unet import create_unet_model, unet_split

__all__ = ["cnn_learner", "unet_learner"]


def cnn_learner(data, arch, metrics: Sequence[Callable] = (), pretrained=True, ps: float = 0.5,
                lin_ftrs: list[int] | None = None, n_out: int | None = None, loss_func=None,
                **learner_kwargs) -> Learner:
    """A resnet body + fastai head on `data`; frozen to the head when pretrained weights are loaded."""
    name = arch_name(arch)
    n_out = n_out or data.c
    model = create_cnn_model(name, n_out, pretrained=pretrained, ps=ps, lin_ftrs=lin_ftrs)
    spec = {"kind": "cnn", "arch": name, "n_out": n_out, "ps": ps, "lin_ftrs": lin_ftrs}
    learn = Learner(data, model, loss_func=loss_func, metrics=metrics, splitter=resnet_split,
                    model_meta=spec, **learner_kwargs)
    if pretrained:
        learn.freeze()
    return learn


def unet_learner(data, arch, metrics: Sequence[Callable] = (), pretrained=True, blur: bool = False,
                 blur_final: bool = True, self_attention: bool = False, n_out: int | None = None,
                 loss_func=None, **learner_kwargs) -> Learner:
    """A DynamicUnet on a resnet encoder for segmentation; frozen to the decoder when pretrained."""
    if self_attention:
        raise ConfigError("unet_learner(self_attention=True) is not supported; use self_attention=False")
    name = arch_name(arch)
    n_out = n_out or data.c
    model = create_unet_model(name, n_out, pretrained=pretrained, blur=blur, blur_final=blur_final)
    spec = {"kind": "unet", "arch": name, "n_out": n_out, "blur": blur, "blur_final": blur_final}
    learn = Learner(data, model, loss_func=loss_func, metrics=metrics, splitter=unet_split,
                    model_meta=spec, **learner_kwargs)
    if pretrained:
        learn.freeze()
    return learn
