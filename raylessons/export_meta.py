"""An export directory's file names and its metadata reader: torch-free, so that Serve's ingress and build
tasks can check an export without importing torch."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import DataError

__all__ = ["EXPORT_MODEL", "EXPORT_META", "read_export_meta", "check_thresholds"]

EXPORT_MODEL, EXPORT_META = "model.pt", "meta.json"


def read_export_meta(dest: str | Path) -> dict:
    """The metadata of an export directory; a missing or malformed file raises DataError."""
    file = Path(dest) / EXPORT_META
    if not file.is_file():
        raise DataError("not an export directory (meta.json missing)", dest)
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON: {e}", file) from None
    for key in ("model", "label_kind"):
        if key not in meta:
            raise DataError(f"missing key {key!r}", file)
    check_thresholds(meta, file)
    return meta


def check_thresholds(meta: dict, where) -> None:
    """DataError naming the field unless meta's optional `thresholds` (one decision threshold per tag, from
    `MultiLabelInterpretation.optimal_thresholds`) maps classes of the export to numbers in [0, 1]."""
    thresholds = meta.get("thresholds")
    if thresholds is None:
        return
    if not isinstance(thresholds, dict):
        raise DataError(f"'thresholds' must map tags to thresholds, got {type(thresholds).__name__}", where)
    classes = set(meta.get("classes") or [])
    for tag, value in thresholds.items():
        if tag not in classes:
            raise DataError(f"thresholds[{tag!r}]: {tag!r} is not one of the export's classes", where)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise DataError(f"thresholds[{tag!r}] must be a number in [0, 1], got {value!r}", where)
