"""A sweep on a 2-node Ray cluster (ray.cluster_utils.Cluster on this machine): trials land on both nodes."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.ray


def test_two_node_sweep_spreads_trials_over_shared_storage(planet_dir, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from raylessons.sweep import SweepConfig, run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2
        points = [{"stage1_lr": 2e-2, "upper": 2e-3}, {"stage1_lr": 1e-2, "upper": 1e-3}]
        result = run_sweep(SweepConfig(
            task="planet", task_config={"data": str(planet_dir), "size": 32, "bs": 16, "arch": "resnet18"},
            trials=2, max_concurrent=2, cpus_per_trial=1, epochs=2, scheduler="fifo", configs=points,
            lesson_first=False, warmup_epochs=0, finder_iters=20, storage_path=str(tmp_path / "shared")))
        # one trial per node (each node has one CPU, each trial takes one), both finished
        assert {r["node_id"] for r in result["rows"]} == nodes
        assert all(r["status"] == "finished" for r in result["rows"])
        # every trial's checkpoints went to the one storage path the nodes share
        exp = Path(result["path"])
        assert len(list(exp.glob("sweep_trial_*/checkpoint_*/state.pt"))) == 2
        assert (exp / "best_export" / "meta.json").is_file()
    finally:
        ray.shutdown()
        cluster.shutdown()
