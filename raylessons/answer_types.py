"""What an HTTP answer may be besides JSON (torch-free: the Serve ingress imports it)."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BinaryAnswer"]


@dataclass
class BinaryAnswer:
    """A non-JSON answer (e.g. a PNG mask) with its media type and extra headers."""

    body: bytes
    media_type: str
    headers: dict = field(default_factory=dict)
