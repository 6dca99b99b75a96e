"""Shared constants that torch-free processes (the Serve ingress) need too: no heavy imports here."""

__all__ = ["MAX_PIXELS", "DEFAULT_THRESHOLD"]

# larger than any lesson image (CamVid 960x720) by far, small enough that decoding cannot exhaust memory
MAX_PIXELS = 40_000_000

DEFAULT_THRESHOLD = 0.2  # the lesson's multi-label threshold
