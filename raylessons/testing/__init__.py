"""Helpers for the tests and the benchmarks (not needed to train or serve)."""
from . import faults

__all__ = ["faults"]
