"""BIWI head pose (lesson3-head-pose): point regression with a CNN, validated on a held-out person."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.biwi import get_ctr
from ..data.transforms import get_transforms, imagenet_stats
from ..data.vision import PointsItemList
from ..metrics import MSELossFlat
from ..options import parse_size
from ..vision_learner import cnn_learner
from .task import HeldOutTest, Task

__all__ = ["TASK", "Config", "build_data", "build_learner", "build_source", "default_plan", "smoke_plan"]


@dataclass
class Config(HeldOutTest):
    """Where BIWI is and how to build data and model (the lesson's values by default)."""

    data: str = field(default="~/.raylessons/data/biwi_head_pose", metadata={
        "help": "dataset root (the real layout or a generated look-alike)", "required": True})
    valid_folder: str = field(default="13", metadata={"help": "the held-out person's folder (validation)"})
    size: int | list[int] = field(default_factory=lambda: [120, 160], metadata={
        "help": "image size of the first stage: 120,160 (height,width; 480x640 squished by exactly 1/4) or one side",
        "parse": parse_size})
    bs: int = field(default=64, metadata={"help": "batch size"})
    arch: str = field(default="resnet34", metadata={"help": "resnet18 | resnet34 | resnet50"})
    pretrained: bool | str = field(default=False, metadata={
        "help": "true (torchvision ImageNet weights), false, or a local weights file"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    on_bad_item: str = field(default="raise", metadata={
        "help": "raise, or skip (log and leave out) corrupt images", "choices": ("raise", "skip")})
    ps: float = field(default=0.5, metadata={"help": "head dropout (fastai's default)"})
    # from scratch, a zero final layer makes the untrained model predict the image centre (MSE ~0.03) instead of
    # kaiming-sized noise (MSE ~2) that the first epochs would spend shrinking
    zero_head: bool = field(default=False, metadata={
        "help": "start the head's last layer at zero (predict the centre; from scratch)"})
    remove_out: bool = field(default=True, metadata={
        "help": "drop a point an augmentation pushes out of the image (NaN, skipped by the loss)"})
    tfms: dict = field(default_factory=dict, metadata={"help": "get_transforms() arguments, as JSON"})


def build_source(cfg: Config):
    """PointsItemList.from_folder(path).split_by_valid_func(folder == '13').label_from_func(get_ctr)."""
    path = Path(cfg.data).expanduser()
    valid = cfg.valid_folder
    return (PointsItemList.from_folder(path, on_bad_item=cfg.on_bad_item)
            .split_by_valid_func(lambda o: Path(o).parent.name == valid)
            .hold_out(cfg.test_pct, use=cfg.split)
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


# the metric is the MSE in [-1, 1] coordinates: the lesson has no other
TASK = Task("head_pose", Config, build_source, build_data, build_learner,
            plans={"lesson": default_plan, "smoke": smoke_plan}, metric="valid_loss", mode="min",
            # the lesson trains the head only (5 epochs at slice(2e-2)) on an ImageNet body; the sweep also trains
            # everything from the start ("all": a body from scratch gains nothing from a frozen stage), at one rate
            # or a decade apart (a body 100x slower than the head stays random), its top rate searched around the
            # frozen guide itself (divisor 1: lr/5 is the lesson's rule after a warm-up, and "all" has none). On the
            # bench's data the valid loss of "all" at 4e-3..2e-2 was 0.018-0.030 against the lesson's 0.051, while
            # two_stage (3 epochs each, upper <= 1.2e-2) never came near (0.08-0.24): it is left out. The lesson's
            # own plan (head only) is every sweep's first trial, so the drawn trials all try "all": with "head" in
            # the space too, half of them went to the lesson's schedule at other rates, and with seeds 6 and 7 no
            # "all" draw reached the good rates (bench/sweep_vs_lesson.py)
            sweep_preset={"schedules": ["all"], "ratios": [1.0, 10.0],
                          "stage1_fracs": [0.5], "divisor": 1.0, "pct_start": None, "moms": None},
            # (the lesson's head-only plan uses stage1_lr alone; an "all" trial uses upper and ratio alone)
            lesson_trial={"stage1_lr": 2e-2, "upper": 4e-3, "ratio": 10.0, "schedule": "head", "stage1_frac": 0.5})
