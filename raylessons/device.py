"""Device selection, thread counts and GPU memory helpers."""
from __future__ import annotations

import os

import torch

__all__ = ["default_device", "gpu_mem", "empty_cache", "set_threads"]


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def gpu_mem(device: int | None = None) -> dict[str, float]:
    """Free, used and total memory of a CUDA device in GiB (zeros on a CPU-only machine)."""
    if not torch.cuda.is_available():
        return {"free": 0.0, "used": 0.0, "total": 0.0}
    free, total = torch.cuda.mem_get_info(device)
    gib = 1024 ** 3
    return {"free": free / gib, "used": (total - free) / gib, "total": total / gib}


def empty_cache() -> None:
    """Release cached CUDA blocks back to the driver (no-op on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def set_threads(n: int | float | None = None) -> int:
    """Set torch's intra-op threads to `n` (default: this process's CPU share, at least 1)."""
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n = max(1, int(n))
    torch.set_num_threads(n)
    return n
