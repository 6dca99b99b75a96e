"""The registry of label kinds: a kind's name (as exports and meta.json store it) -> its class."""
from __future__ import annotations

from ..errors import ConfigError
from .labels import CategoryLabel, FloatLabel, Label, LMLabel, MultiCategoryLabel
from .spatial import PointsLabel, SegmentationLabel

__all__ = ["LABEL_KINDS", "label_kind"]

LABEL_KINDS: dict[str, type[Label]] = {cls.kind: cls for cls in (
    MultiCategoryLabel, CategoryLabel, FloatLabel, LMLabel, SegmentationLabel, PointsLabel)}


def label_kind(name: str) -> type[Label]:
    """The label-kind class called `name`; ConfigError naming the known kinds otherwise."""
    try:
        return LABEL_KINDS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown label kind {name!r}; known: {sorted(LABEL_KINDS)}") from None
