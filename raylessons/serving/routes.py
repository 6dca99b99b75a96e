"""The route table: task -> what its export must hold, which deployment serves it, how to read its bodies.

Adding a task is one `ROUTES` entry (+ an `answer` on its label-kind class in `raylessons/data/` for a new
label kind, + a model class for a new input kind).
"""
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from pydantic import BaseModel

from . import http
from .exports import ExportKind, read_export
from .queries import MaskQuery, NoQuery, ThresholdQuery
from .replicas import ImageModel, TextModel

__all__ = ["ROUTES", "Route", "checked_export"]


@dataclass(frozen=True)
class Route:
    """How one task is served."""

    label_kind: str                                     # checked against the export's meta.json at build
    model: Any                                          # the Serve deployment class (one per input kind)
    read: Callable[[Request, int], Awaitable[bytes]]    # (request, max_body_bytes) -> what the model takes
    query: type[BaseModel] = NoQuery                    # the query parameters the route accepts
    path: str = ""                                      # URL path (default /<task>)
    model_kinds: tuple = ()                             # when set, the export's model kind must be one of these

    @property
    def export_kind(self) -> ExportKind:
        """What an export must hold to be served on this route."""
        return ExportKind(self.label_kind, tuple(self.model_kinds))


ROUTES: dict[str, Route] = {
    "planet": Route("multi_category", ImageModel, http.read_image_body, ThresholdQuery),
    "camvid": Route("segmentation", ImageModel, http.read_image_body, MaskQuery),
    "head_pose": Route("points", ImageModel, http.read_image_body, NoQuery, path="/headpose"),
    "sentiment": Route("category", TextModel, http.read_text_body, NoQuery, model_kinds=("awd_lstm_clas",)),
}


def checked_export(task: str, path: str, root: str | None) -> tuple[Path, dict]:
    """(absolute export directory, its meta.json) of an export `task` can serve, checked without loading weights:
    inside `root` when set, meta.json present and well formed, the model kind the task needs."""
    return read_export(task, path, root, ROUTES[task].export_kind)
