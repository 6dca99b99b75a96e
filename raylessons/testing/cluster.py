"""A local two-node Ray cluster on 127.0.0.1 (ray.cluster_utils.Cluster) for node-loss tests and benches.

The head has 2 CPUs ({"node_a": 1}), node b 1 CPU ({"node_b": 1}); GCS declares a node dead after 3 missed health
checks 0.5 s apart (Ray's default: 5 x 3 s). Every node is on the loopback address: while the cluster is up, Ray
resolves "this machine" to 127.0.0.1 (as on macOS and Windows), so no GCS, raylet or worker listens beyond it.
"""
from __future__ import annotations

__all__ = ["NODE_B", "SYSTEM_CONFIG", "TwoNodeCluster"]

NODE_B = {"num_cpus": 1, "resources": {"node_b": 1}}
# otherwise as raylessons' own local instance: no pre-started workers, no metrics loop
SYSTEM_CONFIG = {"enable_worker_prestart": False, "prestart_worker_first_driver": False,
                 "enable_metrics_collection": False, "health_check_period_ms": 500,
                 "health_check_failure_threshold": 3, "health_check_timeout_ms": 1000}


class _Hold:
    def ready(self) -> bool:
        return True


class TwoNodeCluster:
    """The head and node `b`, with this process attached as the driver; `ensure_b` adds b back after it was lost,
    `shutdown` stops both and restores Ray's address rule."""

    def __init__(self):
        import ray
        from ray._private import ray_constants
        from ray.cluster_utils import Cluster

        self._flag = ray_constants.ENABLE_RAY_CLUSTER
        ray_constants.ENABLE_RAY_CLUSTER = False  # "this machine" is 127.0.0.1 for every node
        self.cluster, self.b = None, None
        try:
            self.cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 2, "resources": {"node_a": 1}, "include_dashboard": False,
                "_system_config": SYSTEM_CONFIG})
            self.head = self.cluster.head_node
            self.ensure_b()
            ray.init(address=self.cluster.address, include_dashboard=False, log_to_driver=False)
        except BaseException:
            self.shutdown()
            raise

    def ensure_b(self):
        """Node b, added (again) when it is not running; returns once the cluster sees every node."""
        if self.b is not None and not self.b.any_processes_alive():
            self.b = None
        if self.b is None:
            self.b = self.cluster.add_node(**NODE_B)
        self.cluster.wait_for_nodes()
        return self.b

    def hold_head_cpu(self):
        """An actor holding one of the head's 2 CPUs (until ray.kill): 2 workers or trials then go one per node."""
        import ray

        hold = ray.remote(num_cpus=1, resources={"node_a": 1})(_Hold).remote()
        ray.get(hold.ready.remote(), timeout=60)
        return hold

    def shutdown(self) -> None:
        import ray
        from ray._private import ray_constants

        ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = self._flag
