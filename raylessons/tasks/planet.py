"""Planet multi-label tagging (lesson3-planet): data chain, learner and the lesson's plan."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..data.block import ImageList
from ..data.transforms import get_transforms, imagenet_stats
from ..metrics import accuracy_thresh, fbeta
from ..options import parse_size
from ..vision_learner import cnn_learner
from .task import HeldOutTest, Task

__all__ = ["TASK", "Config", "acc_02", "build_data", "build_learner", "build_source", "default_plan", "f_score",
           "smoke_plan"]

acc_02 = partial(accuracy_thresh, thresh=0.2)
f_score = partial(fbeta, thresh=0.2)


@dataclass
class Config(HeldOutTest):
    """Where the data is and how to build data and model (the lesson's values by default)."""

    data: str = field(default="~/.raylessons/data/planet", metadata={
        "help": "dataset root (the real layout or a generated look-alike)", "required": True})
    csv: str = field(default="train_v2.csv", metadata={
        "help": "the labels table (image_name, tags), relative to data"})
    folder: str = field(default="train-jpg", metadata={"help": "the images' folder, relative to data"})
    suffix: str = field(default=".jpg", metadata={"help": "the images' file suffix"})
    size: int | list[int] = field(default=128, metadata={
        "help": "image size of the first stage: 128 (square) or 128,160 (height,width)", "parse": parse_size})
    bs: int = field(default=64, metadata={"help": "batch size"})
    valid_pct: float = field(default=0.2, metadata={"help": "share of the images held out for validation"})
    seed: int = field(default=42, metadata={"help": "seed of the random validation split"})
    arch: str = field(default="resnet34", metadata={"help": "resnet18 | resnet34 | resnet50"})
    pretrained: bool | str = field(default=False, metadata={
        "help": "true (torchvision ImageNet weights), false, or a local weights file"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    threshold: float = field(default=0.2, metadata={
        "help": "probability above which a tag is predicted (exported for serving)"})
    on_bad_item: str = field(default="raise", metadata={
        "help": "raise, or skip (log and leave out) corrupt images", "choices": ("raise", "skip")})
    tfms: dict = field(default_factory=lambda: {"flip_vert": True, "max_lighting": 0.1, "max_zoom": 1.05,
                                                "max_warp": 0.0},
                       metadata={"help": "get_transforms() arguments, as JSON"})


def build_source(cfg: Config):
    """ImageList.from_csv(...).split_by_rand_pct(...).label_from_df(label_delim=' ')."""
    path = Path(cfg.data).expanduser()
    return (ImageList.from_csv(path, cfg.csv, folder=cfg.folder, suffix=cfg.suffix, on_bad_item=cfg.on_bad_item)
            .split_by_rand_pct(cfg.valid_pct, seed=cfg.seed)
            .hold_out(cfg.test_pct, use=cfg.split)
            .label_from_df(label_delim=" "))


def build_data(cfg: Config, size: int | None = None, src=None, bs: int | None = None):
    """The DataBunch at `size` (default cfg.size), normalised with ImageNet statistics."""
    src = src if src is not None else build_source(cfg)
    tfms = get_transforms(**cfg.tfms)
    return (src.transform(tfms, size=size or cfg.size)
            .databunch(bs=bs or cfg.bs, num_workers=cfg.num_workers)
            .normalize(imagenet_stats))


def build_learner(data, cfg: Config, **kwargs):
    """cnn_learner with the lesson's metrics (acc_02, f_score)."""
    learn = cnn_learner(data, cfg.arch, metrics=[acc_02, f_score], pretrained=cfg.pretrained, **kwargs)
    learn.model_meta["task"] = "planet"
    learn.export_extra["threshold"] = cfg.threshold
    return learn


def default_plan() -> list[dict]:
    """The notebook's four stages at 128 then 256 px."""
    return [
        {"freeze_to": -1, "epochs": 5, "max_lr": "slice(0.01)", "save": "stage-1-rn34"},
        {"unfreeze": True, "epochs": 5, "max_lr": "slice(1e-5, 2e-3)", "save": "stage-2-rn34"},
        {"freeze": True, "size": 256, "epochs": 5, "max_lr": "slice(5e-3)", "save": "stage-1-256-rn34"},
        {"unfreeze": True, "epochs": 5, "max_lr": "slice(1e-5, 1e-3)", "save": "stage-2-256-rn34"},
    ]


def smoke_plan() -> list[dict]:
    """Two one-epoch stages: enough to exercise freezing, slices, checkpoints and resume."""
    return [{"freeze_to": -1, "epochs": 1, "max_lr": "slice(1e-2)"},
            {"unfreeze": True, "epochs": 1, "max_lr": "slice(1e-5, 1e-3)"}]


TASK = Task("planet", Config, build_source, build_data, build_learner,
            plans={"lesson": default_plan, "smoke": smoke_plan}, metric="fbeta", mode="max",
            # the lesson: slice(lr) frozen, then slice(1e-5, lr/5) unfrozen (upper/lower 200)
            # and everything from the start ("all"): a body trained from scratch gains nothing from a frozen stage
            sweep_preset={"schedules": ["two_stage", "all"], "ratios": [10.0, 100.0, 200.0],
                          "stage1_fracs": [0.25, 0.5], "divisor": 5.0, "pct_start": None, "moms": None},
            lesson_trial={"stage1_lr": 1e-2, "upper": 2e-3, "ratio": 200.0, "schedule": "two_stage",
                          "stage1_frac": 0.5})
