"""Model zoo: builders by name, so that exports rebuild models from JSON metadata alone."""
from __future__ import annotations

from typing import Callable

from torch import nn
from torchvision.models import resnet18, resnet34, resnet50

from .awd_lstm import AWDLSTMConfig, awd_lstm_clas_split, awd_lstm_lm_split, get_language_model, get_text_classifier
from .cnn import create_cnn_model, resnet_split
from .unet import create_unet_model, unet_split

__all__ = ["resnet18", "resnet34", "resnet50", "build_model", "register_model"]

# kind -> builder(spec) -> (model, splitter)
_BUILDERS: dict[str, Callable[[dict], tuple[nn.Module, Callable]]] = {}


def register_model(kind: str):
    """Decorator registering a builder for model specs of `kind`."""
    def deco(fn):
        _BUILDERS[kind] = fn
        return fn
    return deco


@register_model("cnn")
def _build_cnn(spec: dict):
    model = create_cnn_model(spec["arch"], spec["n_out"], pretrained=False, ps=spec.get("ps", 0.5),
                             lin_ftrs=spec.get("lin_ftrs"))
    return model, resnet_split


@register_model("unet")
def _build_unet(spec: dict):
    model = create_unet_model(spec["arch"], spec["n_out"], pretrained=False, blur=spec.get("blur", False),
                              blur_final=spec.get("blur_final", True))
    return model, unet_split


def build_model(spec: dict) -> tuple[nn.Module, Callable]:
    """(model with random weights, splitter) from a model spec dict such as {'kind': 'cnn', ...}."""
    kind = spec.get("kind")
    if kind not in _BUILDERS:
        raise ValueError(f"unknown model kind {kind!r} in export metadata; known: {sorted(_BUILDERS)}")
    return _BUILDERS[kind](spec)


@register_model("awd_lstm_lm")
def _build_awd_lstm_lm(spec: dict):
    cfg = AWDLSTMConfig(**spec["config"])
    return get_language_model(spec["vocab_size"], cfg, spec.get("drop_mult", 1.0)), awd_lstm_lm_split


@register_model("awd_lstm_clas")
def _build_awd_lstm_clas(spec: dict):
    cfg = AWDLSTMConfig(**spec["config"])
    model = get_text_classifier(spec["vocab_size"], spec["n_class"], cfg, spec.get("drop_mult", 1.0),
                                spec.get("bptt", 70), spec.get("max_len", 1400), spec.get("lin_ftrs"), spec.get("ps"))
    return model, awd_lstm_clas_split
