"""CamVid segmentation (lesson3-camvid): data chain, U-Net learner and the lesson's plan."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.transforms import get_transforms, imagenet_stats
from ..data.vision import SegmentationItemList, read_codes
from ..metrics import accuracy_ignoring
from ..options import parse_size
from ..vision_learner import unet_learner
from .task import HeldOutTest, Task

__all__ = ["TASK", "VOID", "Config", "acc_camvid", "build_data", "build_learner", "build_source", "default_plan",
           "get_y_fn", "smoke_plan"]

VOID = 30  # CamVid's Void index in codes.txt


def acc_camvid(input, target):
    """Pixel accuracy ignoring Void (the lesson's metric; `accuracy_ignoring(void_code)` in general)."""
    return _acc_void(input, target)


_acc_void = accuracy_ignoring(VOID)


@dataclass
class Config(HeldOutTest):
    """Where CamVid is and how to build data and model (the lesson's values by default)."""

    data: str = field(default="~/.raylessons/data/camvid", metadata={
        "help": "dataset root (the real layout or a generated look-alike)", "required": True})
    images: str = field(default="images", metadata={"help": "the frames' folder, relative to data"})
    labels: str = field(default="labels", metadata={"help": "the masks' folder, relative to data"})
    codes: str = field(default="codes.txt", metadata={"help": "the class names, one a line, relative to data"})
    valid: str = field(default="valid.txt", metadata={"help": "the validation frames' names, relative to data"})
    size: int | list[int] = field(default_factory=lambda: [360, 480], metadata={
        "help": "image size of the first stage: 360,480 (height,width; the lesson's src_size // 2) or one side",
        "parse": parse_size})
    bs: int = field(default=8, metadata={"help": "batch size"})
    arch: str = field(default="resnet34", metadata={"help": "resnet18 | resnet34 | resnet50 (the U-Net's encoder)"})
    pretrained: bool | str = field(default=False, metadata={
        "help": "true (torchvision ImageNet weights), false, or a local weights file"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    on_bad_item: str = field(default="raise", metadata={
        "help": "raise, or skip (log and leave out) corrupt images or masks", "choices": ("raise", "skip")})
    tfms: dict = field(default_factory=dict, metadata={"help": "get_transforms() arguments, as JSON"})


def get_y_fn(x: Path, labels: str | Path) -> Path:
    """`images/0016E5_05400.png` -> `labels/0016E5_05400_P.png` (the lesson's get_y_fn)."""
    x = Path(x)
    return Path(labels) / f"{x.stem}_P{x.suffix}"


def build_source(cfg: Config):
    """SegmentationItemList.from_folder(images).split_by_fname_file('../valid.txt').label_from_func(...)."""
    path = Path(cfg.data).expanduser()
    codes = read_codes(path / cfg.codes)
    labels = path / cfg.labels
    return (SegmentationItemList.from_folder(path / cfg.images, on_bad_item=cfg.on_bad_item)
            .split_by_fname_file(f"../{cfg.valid}")
            .hold_out(cfg.test_pct, use=cfg.split)
            .label_from_func(lambda x: get_y_fn(x, labels), classes=codes))


def build_data(cfg: Config, size=None, src=None, bs: int | None = None):
    """The DataBunch at `size` (default cfg.size), masks transformed with the images, ImageNet-normalised."""
    src = src if src is not None else build_source(cfg)
    size = size or cfg.size
    size = tuple(size) if isinstance(size, (list, tuple)) else size
    return (src.transform(get_transforms(**cfg.tfms), size=size, tfm_y=True)
            .databunch(bs=bs or cfg.bs, num_workers=cfg.num_workers)
            .normalize(imagenet_stats))


def build_learner(data, cfg: Config, **kwargs):
    """unet_learner(data, arch, metrics=acc_camvid, wd=1e-2), Void taken from the codes."""
    void = data.label.void_code
    metric = acc_camvid if void in (None, VOID) else accuracy_ignoring(void)
    learn = unet_learner(data, cfg.arch, metrics=[metric], wd=1e-2, pretrained=cfg.pretrained, **kwargs)
    learn.model_meta["task"] = "camvid"
    return learn


def default_plan(lr: float = 3e-3) -> list[dict]:
    """The notebook: 10 frozen + 12 unfrozen epochs at 360x480, then the same at 720x960."""
    return [
        {"freeze": True, "epochs": 10, "max_lr": f"slice({lr})", "pct_start": 0.9, "save": "stage-1"},
        {"unfreeze": True, "epochs": 12, "max_lr": f"slice({lr / 400:.3g}, {lr / 4:.3g})", "pct_start": 0.8,
         "save": "stage-2"},
        {"freeze": True, "size": [720, 960], "bs": 3, "epochs": 10, "max_lr": "slice(1e-3)", "pct_start": 0.8,
         "save": "stage-1-big"},
        {"unfreeze": True, "epochs": 10, "max_lr": "slice(1e-6, 1e-4)", "save": "stage-2-big"},
    ]


def smoke_plan() -> list[dict]:
    """Two one-epoch stages (frozen, then unfrozen with a slice)."""
    return [{"freeze": True, "epochs": 1, "max_lr": "slice(3e-3)", "pct_start": 0.9},
            {"unfreeze": True, "epochs": 1, "max_lr": "slice(7.5e-6, 7.5e-4)", "pct_start": 0.8}]


# multi-GPU workers normalise over the global batch: U-Net batches are a few images each
TASK = Task("camvid", Config, build_source, build_data, build_learner,
            plans={"lesson": default_plan, "smoke": smoke_plan}, metric="acc_camvid", mode="max", sync_bn=True,
            # the lesson: 10 frozen epochs at slice(lr), 12 unfrozen at slice(lr/400, lr/4) (upper/lower 100)
            # and its long warm-up (pct_start 0.9 frozen, 0.8 unfrozen: every trial gets 0.9)
            # (and "all", everything from the start, for an encoder trained from scratch)
            sweep_preset={"schedules": ["two_stage", "all"], "ratios": [10.0, 100.0], "stage1_fracs": [0.45],
                          "divisor": 4.0, "pct_start": [0.9], "moms": None},
            lesson_trial={"stage1_lr": 3e-3, "upper": 7.5e-4, "ratio": 100.0, "schedule": "two_stage",
                          "stage1_frac": 0.45, "pct_start": 0.9})
