"""Multi-node DDP and losing a node, on one local two-node Ray cluster (ray.cluster_utils.Cluster, 127.0.0.1):
a 2-worker run with a worker on each node ends where a one-node run of the same seed does; node b lost mid-run,
the run resumes on the head from its newest whole checkpoint; node b lost mid-sweep, its trial errors and the
sweep retries it (max_failures) from its checkpoint, no trial running twice to completion.

The head has 2 CPUs ({"node_a": 1}), node b 1 CPU ({"node_b": 1}); workers and trials take 1 CPU each. A run asks
for placement_strategy="SPREAD": one worker per node while both are up, both on the head after the loss (SPREAD
is best effort). Tune places trials as it likes, so the sweep holds one of the head's CPUs (`Hold`) until its
trials are placed.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from raylessons.distributed.checkpoints import is_complete, position
from raylessons.distributed.train import TrainRun, epoch_rows, fit_plan
from raylessons.testing.cluster import TwoNodeCluster
from raylessons.testing.faults import kill_node_when

pytestmark = pytest.mark.ray

PLAN = [{"freeze_to": -1, "epochs": 1, "max_lr": "slice(1e-2)"},
        {"unfreeze": True, "epochs": 2, "max_lr": [1e-4, 1e-2]}]


@pytest.fixture(scope="module")
def two_nodes():
    import ray

    nodes = TwoNodeCluster()
    try:
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        assert ray.get_runtime_context().get_node_id() == nodes.head.node_id  # the driver (and Train's controller)
        yield nodes
    finally:
        nodes.shutdown()


class Placements(threading.Thread):
    """Records the nodes of every placement group with 2+ bundles (a Train worker group) while it is placed."""

    def __init__(self):
        super().__init__(daemon=True)
        self.groups: dict[str, list[str]] = {}
        self.placed, self.stop = threading.Event(), threading.Event()
        self.start()

    def run(self):
        import ray

        while not self.stop.wait(0.2):
            for pg_id, pg in ray.util.placement_group_table().items():
                if pg["state"] == "CREATED" and len(pg["bundles"]) >= 2 and pg_id not in self.groups:
                    self.groups[pg_id] = [pg["bundles_to_node_id"][i] for i in sorted(pg["bundles_to_node_id"])]
                    self.placed.set()

    def finish(self) -> list[list[str]]:
        self.stop.set()
        self.join()
        return list(self.groups.values())


def planet_run(planet_dir, storage, name: str, max_failures: int = 0, placement: str = "PACK") -> TrainRun:
    return TrainRun(task="planet", plan=PLAN, task_config={"data": str(planet_dir), "size": 32, "bs": 16,
                                                             "arch": "resnet18"},
                    name=name, storage_path=str(storage), num_workers=2, cpus_per_worker=1,
                    max_failures=max_failures, placement_strategy=placement, seed=0)


def weights(export: str | Path) -> dict:
    import torch

    return torch.load(Path(export) / "model.pt", map_location="cpu", weights_only=True)


def assert_same_result(a: dict, b: dict, keys=("train_loss", "valid_loss", "fbeta")) -> None:
    for key in keys:
        assert a["metrics"][key] == pytest.approx(b["metrics"][key], rel=1e-4), key
    wa, wb = weights(a["export"]), weights(b["export"])
    assert wa.keys() == wb.keys()
    import torch

    for k in wa:
        assert torch.allclose(wa[k].double(), wb[k].double(), atol=1e-5), k


@pytest.fixture(scope="module")
def one_node(two_nodes, planet_dir, module_tmp) -> dict:
    """PLAN on 2 workers both on the head (nothing held: Ray Train packs them there), seed 0."""
    placements = Placements()
    result = fit_plan(planet_run(planet_dir, module_tmp, "one-node"))
    assert placements.finish() == [[two_nodes.head.node_id] * 2]
    return result


def test_two_node_ddp_equals_one_node(two_nodes, one_node, planet_dir, tmp_path):
    """One worker per node (gloo all-reduce between the two raylets): the same final metrics and exported
    weights as the 2 workers on one node."""
    b = two_nodes.ensure_b()
    placements = Placements()
    t = time.perf_counter()
    result = fit_plan(planet_run(planet_dir, tmp_path, "two-nodes", placement="SPREAD"))
    seconds = time.perf_counter() - t
    (group,) = placements.finish()
    assert sorted(group) == sorted([two_nodes.head.node_id, b.node_id]), "one worker on each node"
    assert result["metrics"]["done"] is True and result["metrics"]["training_iteration_epochs"] == 3
    assert_same_result(result, one_node)
    print(f"two-node DDP run: {seconds:.1f} s")


def _newest_whole(run_dir: Path) -> str | None:
    whole = [p for p in run_dir.glob("checkpoint_s*") if p.is_dir() and position(p) and is_complete(p)]
    return max(whole, key=position).name if whole else None


def test_losing_a_node_mid_run_resumes_on_the_head(two_nodes, one_node, planet_dir, tmp_path):
    """Node b (one of the 2 workers) SIGKILLed with its raylet once the first epoch's checkpoint is whole: the
    worker group restarts (max_failures=1) on the head alone from the newest whole checkpoint and finishes;
    at most one epoch is trained twice and the run ends where the uninterrupted one-node run does."""
    b = two_nodes.ensure_b()
    run_dir = tmp_path / "lost-node"
    placements = Placements()
    at_kill: dict = {}

    def first_epoch_whole() -> bool:  # rows reported and a whole checkpoint, the worker group spread over both
        if not (placements.placed.is_set() and epoch_rows(run_dir) and _newest_whole(run_dir)):
            return False
        at_kill["newest_whole"] = _newest_whole(run_dir)
        return True

    killer = kill_node_when(two_nodes.cluster, b, first_epoch_whole, timeout=300)
    try:
        t = time.perf_counter()
        result = fit_plan(planet_run(planet_dir, tmp_path, "lost-node", max_failures=1, placement="SPREAD"))
        seconds = time.perf_counter() - t
        kill = killer.wait(timeout=10)
    finally:
        killer.join(timeout=30)
        two_nodes.ensure_b()  # lost (or never started): back for the next test
    groups = placements.finish()
    assert kill["killed"], kill
    assert sorted(groups[0]) == sorted([two_nodes.head.node_id, kill["node_id"]])
    assert groups[1:] == [[two_nodes.head.node_id] * 2], "restarted on what was left: the head"
    m = result["metrics"]
    assert m["done"] is True and m["training_iteration_epochs"] == 3
    # one restart, from the newest whole checkpoint at the kill (or one written after it by the head's worker)
    (resume,) = [json.loads(line) for line in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert position(resume["checkpoint"]) >= position(at_kill["newest_whole"])
    stage, epoch = position(resume["checkpoint"])
    assert m["resumed_from_epochs"] == sum(s["epochs"] for s in PLAN[:stage]) + epoch + 1
    lines = [json.loads(line) for line in (run_dir / "epochs.jsonl").read_text().splitlines() if line.strip()]
    replayed = len(lines) - len({(r["stage"], r["epoch"]) for r in lines})
    assert len(epoch_rows(run_dir)) == 3 and replayed <= 1
    assert (Path(result["export"]) / "model.pt").is_file() and (Path(result["export"]) / "meta.json").is_file()
    # every epoch seeded by (seed, rank, epoch): the replay is exact. Not train_loss: it is the recorder's moving
    # average, which restarts with the resumed process (a resume within a stage reports another smoothed value)
    assert_same_result(result, one_node, keys=("valid_loss", "fbeta"))
    print(f"node lost mid-run: {seconds:.1f} s, killed {kill['waited_s']:.1f} s in, resumed from "
          f"{resume['checkpoint']}, {replayed} epoch(s) replayed")


def _trial_rows(exp: Path) -> dict[str, list[dict]]:
    out = {}
    for res in exp.glob("sweep_trial_*/result.json"):
        out[res.parent.name] = [json.loads(line) for line in res.read_text().splitlines() if line.strip()]
    return out


def test_losing_a_node_mid_sweep(two_nodes, planet_dir, tmp_path):
    """4 single-worker trials, 2 at a time, one on each node; node b lost once its trial has reported an epoch.
    With max_failures=1 Tune retries that trial (on the head) from its last checkpoint within the same sweep: every
    trial finishes, exactly once."""
    import ray

    from raylessons.sweep import SweepConfig, run_sweep

    b = two_nodes.ensure_b()
    epochs = 3
    points = [{"stage1_lr": lr, "upper": lr / 10} for lr in (2e-2, 1e-2, 5e-3, 3e-3)]
    cfg = SweepConfig(task="planet", task_config={"data": str(planet_dir), "size": 32, "bs": 16, "arch": "resnet18"},
                      trials=4, max_concurrent=2, cpus_per_trial=1, epochs=epochs, scheduler="fifo", configs=points,
                      lesson_first=False, warmup_epochs=0, finder_iters=20, storage_path=str(tmp_path), verbose=0,
                      band=100.0, max_failures=1)  # a band wide enough for the fixed points (no warnings)
    hold = two_nodes.hold_head_cpu()
    exp: dict = {}

    def b_trial_mid_way() -> bool:
        rows = _trial_rows(tmp_path / exp["name"]) if "name" in exp else {}
        for name, lines in rows.items():
            if any(r.get("node_id") == b.node_id for r in lines) and 1 <= len(lines) < epochs:
                exp["victim"] = name
                return True
        return False

    from raylessons.sweep.config import experiment_name

    exp["name"] = experiment_name(cfg)
    killer = kill_node_when(two_nodes.cluster, b, b_trial_mid_way, timeout=400, on_kill=lambda: ray.kill(hold))
    try:
        t = time.perf_counter()
        first = run_sweep(cfg)
        first_s = time.perf_counter() - t
        kill = killer.wait(timeout=10)
    finally:
        killer.join(timeout=30)
        two_nodes.ensure_b()
    assert kill["killed"], kill
    status = {Path(r["path"]).name: r["status"] for r in first["rows"]}
    assert len(status) == 4 and set(status.values()) == {"finished"}, status  # the lost trial too: retried
    assert exp["victim"] in status
    rows = _trial_rows(Path(first["path"]))
    assert sorted(rows) == sorted(status)
    for name, lines in rows.items():  # each trial reported its last epoch once: none ran twice to completion
        assert sum(r["training_iteration_epochs"] == epochs for r in lines) == 1, name
        assert sum(bool(r.get("done")) for r in lines) == 1, name
    victim = rows[exp["victim"]]
    resumed = [r for r in victim if "resumed_from_epochs" in r]
    assert resumed and resumed[0]["training_iteration_epochs"] == resumed[0]["resumed_from_epochs"] + 1
    assert len(victim) - epochs <= 1  # at most the epoch in flight at the kill reported twice
    assert (Path(first["path"]) / "best_export" / "meta.json").is_file()
    print(f"node lost mid-sweep: {first_s:.1f} s (node lost {kill['waited_s']:.1f} s in), the lost trial retried")
