"""An export directory's file names and its metadata reader: torch-free, so that Serve's ingress and build
tasks can check an export without importing torch."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import DataError

__all__ = ["EXPORT_MODEL", "EXPORT_META", "read_export_meta"]

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
    return meta
