"""Errors raised for bad input: each names the file, row or field at fault."""
from __future__ import annotations

from pathlib import Path

__all__ = ["RaylessonsError", "DataError", "DownloadError", "ConfigError"]


class RaylessonsError(Exception):
    """Base class of every error raylessons raises on purpose."""


class DataError(RaylessonsError, ValueError):
    """A data item or table is malformed; `where` names the file (and row) at fault."""

    def __init__(self, message: str, where: str | Path | None = None):
        self.where = None if where is None else str(where)
        super().__init__(f"{self.where}: {message}" if self.where else message)


class DownloadError(RaylessonsError, RuntimeError):
    """A dataset or weights download could not be done; the message says what to do."""


class ConfigError(RaylessonsError, ValueError):
    """A plan, search space or option is invalid."""
