"""Item lists of images with spatial targets: segmentation masks and points.

- `SegmentationItemList.from_folder(path/'images').split_by_fname_file('../valid.txt')
  .label_from_func(get_y_fn, classes=codes)`: each label is a mask file whose pixel values are class ids.
- `PointsItemList.from_folder(path).split_by_valid_func(...).label_from_func(get_ctr)`: each label is a
  (K, 2) tensor of (row, col) pixel coordinates in the original image.

The label kinds themselves (how targets move with the image, their loss, decoding and drawing) are in
spatial.py; an item list here only says which kind its labels are.
"""
from __future__ import annotations

from .block import ImageList
from .spatial import PointsLabel, SegmentationLabel, read_codes

__all__ = ["SegmentationItemList", "PointsItemList", "SegmentationLabel", "PointsLabel", "read_codes"]


class SegmentationItemList(ImageList):
    """Images whose labels are class-index masks (label with `label_from_func(get_y_fn, classes=codes)`)."""

    _label_cls = SegmentationLabel


class PointsItemList(ImageList):
    """Images whose labels are points (label with `label_from_func(get_ctr)`)."""

    _label_cls = PointsLabel
