"""Loading fastai v1 AWD-LSTM weights (WT103, learn.save files, save_encoder files) into our models."""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import DataError

__all__ = ["read_itos", "convert_weights", "load_lm_checkpoint", "encoder_state", "load_encoder_state"]

# derived copies of `<name>_raw` that fastai's checkpoints may or may not hold
_OPTIONAL_KEY = re.compile(r"(^|\.)rnns\.\d+\.module\.weight_hh_l0$")
_VOCAB_KEYS = ("0.encoder.weight", "0.encoder_dp.emb.weight", "1.decoder.weight")


class _ListOfStrUnpickler(pickle.Unpickler):
    """Builds nothing but lists and strings: a general pickle can run any code when loaded."""

    def find_class(self, module: str, name: str):
        if (module, name) in {("builtins", "list"), ("builtins", "str")}:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: an itos file is a list of strings")


def read_itos(path: str | Path) -> list[str]:
    """A vocabulary (id -> token) from a JSON list or from fastai's itos .pkl (read with a list/str-only unpickler)."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            itos = json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".pkl":
            with open(path, "rb") as f:
                itos = _ListOfStrUnpickler(f).load()
        else:
            raise DataError(f"unknown itos format {path.suffix!r}: use a .json list or fastai's .pkl", path)
    except (pickle.UnpicklingError, json.JSONDecodeError, EOFError) as e:
        raise DataError(f"not a readable itos file ({e})", path) from None
    if not isinstance(itos, list) or not all(isinstance(s, str) for s in itos):
        raise DataError(f"an itos file must hold a list of strings, got {type(itos).__name__}", path)
    return itos


def convert_weights(state_dict: Mapping[str, torch.Tensor], old_itos: Sequence[str],
                    new_itos: Sequence[str]) -> dict[str, torch.Tensor]:
    """Remap the vocabulary rows of an LM state dict by token string; unseen tokens get the mean row and bias."""
    sd = dict(state_dict)
    enc = sd["0.encoder.weight"]  # (V_old, E)
    if enc.size(0) != len(old_itos):
        raise ValueError(f"0.encoder.weight has {enc.size(0)} rows but old_itos has {len(old_itos)} tokens")
    stoi = {s: i for i, s in enumerate(old_itos)}  # a repeated token maps to its last id, as in fastai
    idx = torch.tensor([stoi.get(s, -1) for s in new_itos], dtype=torch.long)
    found = idx >= 0

    def remap(old: torch.Tensor) -> torch.Tensor:
        new = old.mean(0, keepdim=True).expand(len(new_itos), *old.shape[1:]).clone()  # (V_new, ...)
        new[found] = old[idx[found]]
        return new

    new_w = remap(enc)
    for key in _VOCAB_KEYS:
        if key in sd or key == "1.decoder.weight":  # fastai writes the (tied) decoder weight in any case
            sd[key] = new_w.clone()
    if "1.decoder.bias" in sd:
        sd["1.decoder.bias"] = remap(sd["1.decoder.bias"])
    return sd


def _read_state(state_or_path) -> dict[str, torch.Tensor]:
    if isinstance(state_or_path, (str, Path)):
        path = Path(state_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            state_or_path = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise DataError(f"not a weights-only torch checkpoint ({e})", path) from None
    state = state_or_path
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]  # learn.save writes {'model': sd, 'opt': ...}
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("a checkpoint must be a state dict of tensors or {'model': state dict, ...}")
    return dict(state)


def _check_fits(model: nn.Module, sd: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Raise a ValueError naming every missing, unexpected or mis-shaped key (optional keys aside)."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    sd = {k: v for k, v in sd.items() if not _OPTIONAL_KEY.search(k) or k in expected}
    missing = sorted(k for k in expected if k not in sd)
    unexpected = sorted(k for k in sd if k not in expected)
    shapes = [k for k in expected if k in sd and sd[k].shape != expected[k]]
    problems = ([f"missing keys: {missing}"] if missing else []) + \
               ([f"unexpected keys: {unexpected}"] if unexpected else []) + \
               [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(expected[k])}" for k in shapes]
    if any(k.endswith(("encoder.weight", "decoder.weight", "decoder.bias")) for k in shapes):
        problems.append("the vocabularies differ: pass old_itos and new_itos to remap the rows by token")
    if any("rnns." in k for k in shapes):
        problems.append("the LSTM sizes differ: fastai's WT103_1 weights have n_hid=1150, WT103_FWD 1152; "
                        "build the model with AWDLSTMConfig(n_hid=...) to match")
    if problems:
        raise ValueError(f"{what} does not fit the model:\n  " + "\n  ".join(problems))
    return sd


def _encoder_of(model: nn.Module) -> nn.Module:
    """The AWD_LSTM inside an LM ([AWD_LSTM, decoder]), a classifier ([MultiBatchEncoder, head]) or itself."""
    if isinstance(model, nn.Sequential):
        first = model[0]
        return first.module if hasattr(first, "bptt") else first
    return model


def _is_classifier(model: nn.Module) -> bool:
    return isinstance(model, nn.Sequential) and hasattr(model[0], "bptt")


def load_lm_checkpoint(model: nn.Module, state_or_path, old_itos: Sequence[str] | None = None,
                       new_itos: Sequence[str] | None = None) -> nn.Module:
    """Load fastai v1 LM weights (a path, {'model': sd} or a bare state dict), remapping the vocab if given.

    A classifier receives only the encoder (`0.*`) part, as fastai's text_classifier_learner(pretrained=True).
    """
    sd = _read_state(state_or_path)
    if (old_itos is None) != (new_itos is None):
        raise ValueError("pass both old_itos and new_itos (or neither)")
    if old_itos is not None:
        sd = convert_weights(sd, old_itos, new_itos)
    if _is_classifier(model):
        return load_encoder_state(model, {k[2:]: v for k, v in sd.items() if k.startswith("0.")})
    sd = _check_fits(model, sd, "LM checkpoint")
    model.load_state_dict(sd)
    if hasattr(model, "reset"):
        model.reset()
    return model


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What fastai's save_encoder writes: the AWD_LSTM's state dict, keys like `encoder.weight`, `rnns.0...`."""
    return _encoder_of(model).state_dict()


def load_encoder_state(model: nn.Module, state_or_path) -> nn.Module:
    """Load a save_encoder file (or state dict) into an LM's or classifier's AWD_LSTM (`model[0].module`)."""
    sd = _read_state(state_or_path)
    if "0.encoder.weight" in sd:  # a whole LM checkpoint: take its encoder part
        sd = {k[2:]: v for k, v in sd.items() if k.startswith("0.")}
    encoder = _encoder_of(model)
    encoder.load_state_dict(_check_fits(encoder, sd, "encoder state"))
    encoder.reset()
    return model
