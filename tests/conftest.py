"""Shared fixtures: tiny generated datasets in the real on-disk formats, one Ray session per module."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def planet_dir(tmp_path_factory) -> Path:
    """A small Planet look-alike (train_v2.csv + train-jpg/ + test-jpg/)."""
    from raylessons.data.synth import synth

    return synth("planet", tmp_path_factory.mktemp("planet"), n=96, size=64, seed=1, n_test=4)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for a test module (starting Ray costs seconds)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
