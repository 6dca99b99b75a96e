"""Generated look-alikes of the lesson's datasets, written in the real on-disk formats."""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

__all__ = ["DATASETS", "synth", "add_size_arguments"]

DATASETS = ("planet", "camvid", "biwi", "imdb")


def synth(name: str, out: str | Path, **kwargs) -> Path:
    """Write the look-alike of dataset `name` under `out` and return its root."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    module = importlib.import_module(f"raylessons.data.synth.{name}")
    return module.synth(Path(out), **kwargs)


class _SizePart(argparse.Action):
    """Store --height / --width into the `size` tuple that the generators take."""

    def __call__(self, parser, namespace, value, option_string=None):
        size = list(getattr(namespace, "size"))
        size[0 if option_string == "--height" else 1] = value
        setattr(namespace, "size", tuple(size))


def add_size_arguments(parser: argparse.ArgumentParser, default: tuple[int, int], real: tuple[int, int],
                       note: str = "") -> None:
    """--height/--width filling one `size=(h, w)` keyword; `real` is the real data's frame size."""
    parser.add_argument("--height", type=int, dest="size", action=_SizePart, default=argparse.SUPPRESS,
                        help=f"image height in pixels (real: {real[0]}{note})")
    parser.add_argument("--width", type=int, dest="size", action=_SizePart, default=argparse.SUPPRESS,
                        help=f"image width in pixels (real: {real[1]})")
    parser.set_defaults(size=tuple(default))
