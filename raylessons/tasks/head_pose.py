"""BIWI head pose (lesson3-head-pose): point regression with a CNN, validated on a held-out person."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.biwi import get_ctr
from ..data.block import PointsItemList
from ..data.transforms import get_transforms, imagenet_stats
from ..metrics import MSELossFlat
from ..vision_learner import cnn_learner

__all__ = ["Config", "METRIC", "MODE", "SYNC_BN", "build_source", "build_data", "build_learner",
           "default_plan", "smoke_plan"]

METRIC, MODE = "valid_loss", "min"  # MSE in [-1, 1] coordinates; the lesson has no other metric
SYNC_BN = False


@dataclass
class Config:
    """Where BIWI is and how to build data and model (the lesson's values by default)."""

    data: str = "~/.raylessons/data/biwi_head_pose"
    valid_folder: str = "13"  # one held-out person
    size: list = field(default_factory=lambda: [120, 160])  # 480x640 squished by exactly 1/4
    bs: int = 64
    arch: str = "resnet34"
    pretrained: bool | str = False
    num_workers: int = 0
    on_bad_item: str = "raise"  # "skip": corrupt images are logged and left out
    ps: float = 0.5  # head dropout (fastai's default)
    # from scratch, a zero final layer makes the untrained model predict the image centre (MSE ~0.03) instead of
    # kaiming-sized noise (MSE ~2) that the first epochs would spend shrinking
    zero_head: bool = False
    remove_out: bool = True  # a point an augmentation pushes out of the image is dropped (NaN, skipped by the loss)
    tfms: dict = field(default_factory=dict)  # get_transforms() defaults


def build_source(cfg: Config):
    """PointsItemList.from_folder(path).split_by_valid_func(folder == '13').label_from_func(get_ctr)."""
    path = Path(cfg.data).expanduser()
    valid = cfg.valid_folder
    return (PointsItemList.from_folder(path, on_bad_item=cfg.on_bad_item)
            .split_by_valid_func(lambda o: Path(o).parent.name == valid)
            .label_from_func(get_ctr))


def build_data(cfg: Config, size=None, src=None, bs: int | None = None):
    """The DataBunch at `size` (default cfg.size): points move with every flip, rotation, zoom and warp."""
    src = src if src is not None else build_source(cfg)
    size = size or cfg.size
    size = tuple(size) if isinstance(size, (list, tuple)) else size
    return (src.transform(get_transforms(**cfg.tfms), tfm_y=True, size=size, remove_out=cfg.remove_out)
            .databunch(bs=bs or cfg.bs, num_workers=cfg.num_workers)
            .normalize(imagenet_stats))


def build_learner(data, cfg: Config, **kwargs):
    """cnn_learner(data, arch) with MSELossFlat and 2 outputs per point."""
    learn = cnn_learner(data, cfg.arch, pretrained=cfg.pretrained, ps=cfg.ps, loss_func=MSELossFlat(), **kwargs)
    if cfg.zero_head:
        torch.nn.init.zeros_(learn.model[1][-1].weight)
        torch.nn.init.zeros_(learn.model[1][-1].bias)
    learn.model_meta["task"] = "head_pose"
    return learn


def default_plan() -> list[dict]:
    """The notebook: fit_one_cycle(5, slice(2e-2)) with the body frozen."""
    return [{"freeze": True, "epochs": 5, "max_lr": "slice(2e-2)", "save": "stage-1"}]


def smoke_plan() -> list[dict]:
    """One frozen epoch and one unfrozen epoch."""
    return [{"freeze": True, "epochs": 1, "max_lr": "slice(2e-2)"},
            {"unfreeze": True, "epochs": 1, "max_lr": "slice(1e-4, 1e-3)"}]
