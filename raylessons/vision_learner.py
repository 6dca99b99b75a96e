"""cnn_learner: the lesson's constructor for image classifiers and regressors."""
from __future__ import annotations

from typing import Callable, Sequence

from .learner import Learner
from .models.cnn import arch_name, create_cnn_model, resnet_split

__all__ = ["cnn_learner"]


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
