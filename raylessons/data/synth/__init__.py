"""Generated look-alikes of the lesson's datasets, written in the real on-disk formats."""
from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["DATASETS", "synth"]

DATASETS = ("planet", "camvid", "biwi", "imdb")


def synth(name: str, out: str | Path, **kwargs) -> Path:
    """Write the look-alike of dataset `name` under `out` and return its root."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    module = importlib.import_module(f"raylessons.data.synth.{name}")
    return module.synth(Path(out), **kwargs)
