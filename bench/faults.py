"""Faults, injected and counted: a Serve replica killed under load, 1,000+ malformed bodies, Train workers killed
mid-epoch again and again, a sweep driver killed mid-way, a node of a two-node cluster lost during DDP training
and during a sweep. Prints the figures of issues 7 and 20 side by side.

    python bench/faults.py [--kills 10] [--bodies 1000] [--load-seconds 20] [--skip serve,train,sweep]
                           [--only node-train,node-sweep] [--node-epochs 4]

1. Serve: a planet deployment with 2 replicas under steady load from 4 users (loopback only, bounded); one
   replica is SIGKILLed. Run twice in the same app: with the ingress retry (raylessons) and with
   `replica_retries=0` (what plain Ray does). Requests answered / failed before, during (the 12 s after the
   kill) and after, and the throughput of each window.
2. Hostile input: `--bodies` malformed requests across the routes (random bytes, truncated JPEG/PNG, images
   declaring huge dimensions, wrong content types, deep or huge JSON, non-UTF-8 text): answers by status
   class, and replica memory at peak against idle.
3. Train: a plan of `--kills + 1` epochs on 2 workers with max_failures = `--kills`; one worker is SIGKILLed
   0.4 s into each epoch after the first (once its checkpoint is whole). For every restart: the checkpoint it
   resumed from against the newest one reported before the kill; the final metrics against an uninterrupted
   run of the same seed.
4. Tune: a 3-trial sweep whose driver is SIGKILLed after the first trial finishes; `Tuner.restore` finishes it.
   Trials finished before / after, and trials run to completion more than once.
5. Node loss, DDP (`node-train`): a local two-node cluster on 127.0.0.1 (head 2 CPUs, node b 1 CPU); a plan of
   `--node-epochs` epochs on 2 workers, one per node (placement_strategy SPREAD), run
   uninterrupted and then again with node b (raylet and every process it started) SIGKILLed 0.4 s into the
   epoch after half of them are checkpointed; max_failures=1 resumes both workers on the head. Time lost against
   the uninterrupted run, seconds from the kill to the restarted workers' resume, epochs replayed, final metrics.
6. Node loss, sweep (`node-sweep`): on the same cluster, 4 single-worker trials of 3 epochs, 2 at a time (one per
   node), run uninterrupted, then again with max_failures=1 and node b lost once its trial has reported an epoch:
   Tune retries that trial from its checkpoint on the head within the same sweep. Trials retried, trials errored
   in the end, trials run to completion more than once, epochs replayed, time lost.
   Both node rows print the 1-minute load average: on a shared 2-core machine the side-by-side times move with it.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import serve_load as sl  # bench/serve_load.py, beside this script

from raylessons.testing.cluster import TwoNodeCluster
from raylessons.testing.faults import (
    declaring,
    image_bytes,
    kill_node_when,
    serve_replicas,
    sigkill,
    train_workers,
)

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # never anything but loopback
DURING_S = 12.0  # the window after a kill counted as "during"


# --- 1. a replica killed under load ---

async def _steady_users(url_port: int, body: bytes, users: int, seconds: float, rows: list) -> None:
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(sl._user(url_port, "/planet", body, "image/jpeg", stop_at, [10**6], rows)
                           for _ in range(users)))


def replica_kill(port: int, body: bytes, seconds: float, users: int = 4) -> dict:
    """Load for `seconds`; one of the 2 planet replicas SIGKILLed at a third of it. Answers, failures and
    throughput before the kill, in the DURING_S after it, and after that."""
    pids = sorted(serve_replicas("raylessons", "planet"))
    assert len(pids) == 2, f"expected 2 planet replicas, found {pids}"
    rows: list = []
    start = time.perf_counter()
    loader = threading.Thread(target=lambda: asyncio.run(_steady_users(port, body, users, seconds, rows)))
    loader.start()
    time.sleep(seconds / 3)
    killed_at = time.perf_counter()
    sigkill(pids[0])
    loader.join()
    end = max(t + lat for t, lat, _ in rows)
    windows = {"before": (start, killed_at), "during": (killed_at, killed_at + DURING_S),
               "after": (killed_at + DURING_S, end + 1e-9)}
    out = {}
    for name, (a, b) in windows.items():  # by the time each answer came back: one in flight at the kill is "during"
        done = [s for t, lat, s in rows if a <= t + lat < b]
        out[name] = {"answered": len(done), "failed": sum(s != 200 for s in done),
                     "rps": round(len(done) / (b - a), 1)}
    return out


# --- 2. malformed bodies ---

def malformed_bodies(n: int, max_body: int, seed: int = 0) -> list[tuple[str, str, bytes]]:
    """`n` (path, content type, body) triples, each malformed by construction, cycling over the kinds."""
    rng = random.Random(seed)
    images = [image_bytes(fmt="PNG"), image_bytes(fmt="JPEG")]
    image_paths, image_types = ["/planet", "/camvid", "/headpose"], ["image/jpeg", "image/png",
                                                                      "application/octet-stream"]
    kinds = [
        lambda: (rng.choice(image_paths), rng.choice(image_types), rng.randbytes(rng.randint(0, 4096))),
        lambda: (rng.choice(image_paths), rng.choice(image_types),
                 (img := rng.choice(images))[:int(len(img) * rng.uniform(0, 0.7))]),
        lambda: (rng.choice(image_paths), rng.choice(image_types),
                 declaring(rng.randint(7000, 65535), rng.randint(7000, 65535), rng.choice(["PNG", "JPEG"]))),
        lambda: (rng.choice(image_paths + ["/sentiment"]), rng.choice(["text/plain", "application/xml", "video/mp4"]),
                 rng.choice(images)),
        lambda: ("/sentiment", "application/json", b"[" * (n_ := rng.randint(1000, 60000)) + b"]" * n_),
        lambda: ("/sentiment", "application/json", b'{"text": "' + b"a" * rng.randint(max_body, 2 * max_body) + b'"}'),
        lambda: ("/sentiment", "application/json", b'{"text": "' + rng.randbytes(64).replace(b'"', b"") + b'\xff"}'),
        lambda: ("/sentiment", "application/json", json.dumps({"text": rng.choice(["", "  ", None, 3, []])}).encode()),
    ]
    return [kinds[i % len(kinds)]() for i in range(n)]


async def _send_all(port: int, requests: list, concurrency: int = 4) -> list[int]:
    import httpx

    statuses: list[int] = []
    queue = list(reversed(requests))
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=60, trust_env=False) as client:
        async def worker():
            while queue:
                path, ctype, body = queue.pop()
                r = await client.post(path, content=body, headers={"content-type": ctype})
                ok_json = r.headers.get("content-type", "").startswith("application/json") and "error" in r.json()
                statuses.append(r.status_code if ok_json else -r.status_code)  # negative: not a JSON error
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def hostile_input(port: int, n: int, max_body: int) -> dict:
    idle = serve_replicas("raylessons", "")
    names = {pid: f"{d}:{pid}" for d in ("Ingress", "planet", "camvid", "head_pose", "sentiment")
             for pid in serve_replicas("raylessons", d)}
    peak, stop = dict(idle), threading.Event()

    def sample():
        while not stop.wait(0.05):
            for pid, kb in serve_replicas("raylessons", "").items():
                peak[pid] = max(peak.get(pid, 0), kb)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        statuses = asyncio.run(_send_all(port, malformed_bodies(n, max_body)))
    finally:
        stop.set()
        sampler.join()
    return {"sent": len(statuses), "4xx_json": sum(400 <= s < 500 for s in statuses),
            "5xx": sum(abs(s) >= 500 for s in statuses), "not_json": sum(s < 0 for s in statuses),
            "replicas_restarted": len(set(idle) - set(serve_replicas("raylessons", ""))),
            "peak_over_idle_memory": round(max(peak[p] / idle[p] for p in idle), 3),
            "idle_mib": {names.get(p, p): round(kb / 1024) for p, kb in idle.items()},
            "peak_mib": {names.get(p, p): round(peak[p] / 1024) for p in idle}}


def serve_section(args, tmp: Path) -> dict:
    from raylessons.serving import local

    planet, body = sl.make_export(tmp / "serve", "resnet18", 64)
    exports = _small_exports(tmp)
    port = args.serve_port
    max_body = 2 * 2**20
    local.start({"planet": str(planet), **exports}, port=port, max_body_bytes=max_body, replica_cpus=0.3)
    out = {}
    try:
        local.scale("planet", num_replicas=2)
        out["replica_kill_with_retries"] = replica_kill(port, body, args.load_seconds)
        print("replica kill, raylessons (retries on):", out["replica_kill_with_retries"], flush=True)
        # the same app without the ingress retry: a new deploy of its args (replicas restart), 2 planet replicas
        local.start({"planet": str(planet), **exports}, port=port, max_body_bytes=max_body, replica_cpus=0.3,
                    replica_retries=0)
        local.scale("planet", num_replicas=2)
        time.sleep(2)
        out["replica_kill_plain"] = replica_kill(port, body, args.load_seconds)
        print("replica kill, replica_retries=0 (plain Ray):", out["replica_kill_plain"], flush=True)
        local.scale("planet", num_replicas=1)
        time.sleep(2)
        out["malformed"] = hostile_input(port, args.bodies, max_body)
        print("malformed bodies:", out["malformed"], flush=True)
    finally:
        local.shutdown()
    return out


def _small_exports(tmp: Path) -> dict[str, str]:
    """Untrained camvid, head-pose and sentiment exports on tiny look-alikes (every route answers)."""
    from raylessons.data.synth import synth
    from raylessons.data.synth.imdb import synth as synth_imdb
    from raylessons.data.text import TextList
    from raylessons.tasks import camvid, head_pose
    from raylessons.text_learner import AWD_LSTM, text_classifier_learner

    cv = camvid.Config(data=str(synth("camvid", tmp / "camvid", n=6, size=(48, 64))), size=[32, 48], bs=2,
                       arch="resnet18")
    hp = head_pose.Config(data=str(synth("biwi", tmp / "biwi", persons=13, frames=1)), size=[24, 32], bs=4,
                          arch="resnet18")
    imdb = synth_imdb(tmp / "imdb", n_train=30, n_test=10, n_unsup=0, n_sample=0)
    data = (TextList.from_folder(imdb).split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]).databunch(bs=8))
    clas = text_classifier_learner(data, AWD_LSTM, config=dict(emb_sz=16, n_hid=24, n_layers=2))
    return {"camvid": str(camvid.build_learner(camvid.build_data(cv), cv).export(tmp / "camvid-export")),
            "head_pose": str(head_pose.build_learner(head_pose.build_data(hp), hp).export(tmp / "hp-export")),
            "sentiment": str(clas.export(tmp / "sentiment-export"))}


# --- 3. Train workers killed again and again ---

def train_section(args, tmp: Path) -> dict:
    from raylessons.data.synth import synth
    from raylessons.distributed.checkpoints import is_complete
    from raylessons.distributed.train import TrainRun, fit_plan

    root = synth("planet", tmp / "planet", n=96, size=64, seed=1)
    plan = [{"freeze_to": -1, "epochs": 1, "max_lr": "slice(1e-2)"},
            {"unfreeze": True, "epochs": args.kills, "max_lr": [1e-4, 1e-2]}]
    task_config = {"data": str(root), "size": 32, "bs": 16, "arch": "resnet18"}

    def run(name: str, failures: int):
        return TrainRun(task="planet", plan=plan, task_config=task_config, name=name, storage_path=str(tmp),
                        num_workers=2, max_failures=failures, seed=0)

    t = time.perf_counter()
    whole = fit_plan(run("whole", 0))["metrics"]
    whole_s = time.perf_counter() - t
    kills: list[dict] = []

    def killer():  # after each epoch's checkpoint is whole (but the last), kill a worker 0.4 s into the next
        names = ["checkpoint_s00_e000"] + [f"checkpoint_s01_e{e:03d}" for e in range(args.kills - 1)]
        for name in names:
            path = tmp / "killed" / name
            deadline = time.time() + 600
            while not is_complete(path) and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.4)
            workers = train_workers()
            newest = max((p.name for p in (tmp / "killed").glob("checkpoint_s*") if is_complete(p)), default=None)
            if workers:
                sigkill(workers[-1])
                kills.append({"after": name, "newest_whole_at_kill": newest})

    t = time.perf_counter()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    killed = fit_plan(run("killed", args.kills))
    thread.join(timeout=5)
    killed_s = time.perf_counter() - t
    resumes = [json.loads(line) for line in (tmp / "killed" / "resumes.jsonl").read_text().splitlines()]
    matched = sum(r["checkpoint"] == k["newest_whole_at_kill"] for r, k in zip(resumes, kills))
    m = killed["metrics"]
    return {"kills": len(kills), "restarts": len(resumes),
            "resumed_from_newest_reported": f"{matched} of {len(kills)}",
            "pairs": [(k["newest_whole_at_kill"], r["checkpoint"]) for k, r in zip(kills, resumes)],
            "final": {k: (round(m[k], 6), round(whole[k], 6)) for k in ("train_loss", "valid_loss", "fbeta")},
            "seconds": {"uninterrupted": round(whole_s, 1), "killed": round(killed_s, 1)}}


# --- 4. a sweep driver killed mid-way ---

def _finished(exp: Path, epochs: int) -> dict[str, int]:
    out = {}
    for res in exp.glob("sweep_trial_*/result.json"):
        lines = [json.loads(line) for line in res.read_text().splitlines() if line.strip()]
        if lines and lines[-1].get("training_iteration") == epochs:
            out[res.parent.name] = len(lines)
    return out


def sweep_section(args, tmp: Path) -> dict:
    from raylessons.data.synth import synth
    from raylessons.sweep.run import SweepConfig, experiment_name, run_sweep

    root = synth("planet", tmp / "planet-sweep", n=96, size=64, seed=1)
    cfg = SweepConfig(task="planet", task_config={"data": str(root), "size": 32, "bs": 16, "arch": "resnet18"},
                      trials=3, max_concurrent=1, epochs=2, scheduler="fifo", storage_path=str(tmp / "sweeps"),
                      warmup_epochs=0, finder_iters=20, seed=0)
    exp = Path(cfg.storage_path) / experiment_name(cfg)
    script = tmp / "driver.py"
    script.write_text("import json\nfrom raylessons.sweep.run import SweepConfig, run_sweep\n"
                      f"run_sweep(SweepConfig(**json.loads({json.dumps(json.dumps(cfg.__dict__))})))\n")
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO),
                                                            "RAY_ADDRESS": "local"})
    try:
        deadline = time.time() + 600
        while not _finished(exp, cfg.epochs) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        before = _finished(exp, cfg.epochs)
        plans_before = {p.parent.name: json.loads(p.read_text()) for p in exp.glob("sweep_trial_*/plan.json")}
    finally:
        sigkill(proc.pid, group=True)
        proc.wait()
    result = run_sweep(cfg)
    after = _finished(exp, cfg.epochs)
    plans_after = {p.parent.name: json.loads(p.read_text()) for p in exp.glob("sweep_trial_*/plan.json")}
    return {"trials": cfg.trials, "finished_before_kill": len(before), "finished_after_restore": len(after),
            "kept_results": sum(after.get(t) == n for t, n in before.items()),
            "ran_twice_to_completion": sum(n > cfg.epochs for n in after.values()),
            "plans_kept": sum(plans_after.get(t) == p for t, p in plans_before.items()),
            "plans_before": len(plans_before), "rows": len(result["rows"])}


# --- 5, 6. a node of a two-node cluster lost ---

NODE_SECTIONS = ("node-train", "node-sweep")


def node_train_section(args, tmp: Path, nodes: TwoNodeCluster) -> dict:
    from raylessons.data.synth import synth
    from raylessons.distributed.checkpoints import is_complete, position
    from raylessons.distributed.train import TrainRun, fit_plan

    root = synth("planet", tmp / "planet-nodes", n=96, size=64, seed=1)
    plan = [{"freeze_to": -1, "epochs": 1, "max_lr": "slice(1e-2)"},
            {"unfreeze": True, "epochs": args.node_epochs - 1, "max_lr": [1e-4, 1e-2]}]
    task_config = {"data": str(root), "size": 32, "bs": 16, "arch": "resnet18"}

    def run(name: str, failures: int):
        return TrainRun(task="planet", plan=plan, task_config=task_config, name=name, storage_path=str(tmp),
                        num_workers=2, cpus_per_worker=1, max_failures=failures, placement_strategy="SPREAD",
                        seed=0)

    nodes.ensure_b()
    t = time.perf_counter()
    whole = fit_plan(run("node-whole", 0))["metrics"]
    whole_s = time.perf_counter() - t

    run_dir, half = tmp / "node-lost", args.node_epochs // 2
    at_kill: dict = {}

    def half_checkpointed() -> bool:  # a whole checkpoint of `half` epochs, then 0.4 s into the next epoch
        whole_ckpts = [p for p in run_dir.glob("checkpoint_s*") if position(p) and is_complete(p)]
        if not whole_ckpts:
            return False
        newest = max(whole_ckpts, key=position)
        stage, epoch = position(newest)
        if sum(s["epochs"] for s in plan[:stage]) + epoch + 1 < half:
            return False
        if "seen" not in at_kill:
            at_kill["seen"] = time.perf_counter()
        at_kill["newest_whole"] = newest.name
        return time.perf_counter() - at_kill["seen"] >= 0.4

    nodes.ensure_b()
    killer = kill_node_when(nodes.cluster, nodes.b, half_checkpointed, timeout=600)
    t = time.perf_counter()
    lost = fit_plan(run("node-lost", 1))
    lost_s = time.perf_counter() - t
    kill = killer.wait(timeout=30)
    nodes.ensure_b()
    resumes = [json.loads(line) for line in (run_dir / "resumes.jsonl").read_text().splitlines()]
    lines = [json.loads(line) for line in (run_dir / "epochs.jsonl").read_text().splitlines() if line.strip()]
    m = lost["metrics"]
    return {"epochs": args.node_epochs, "node_killed": kill.get("killed", False),
            "killed_after_s": kill.get("waited_s"), "node_processes_killed": len(kill.get("processes", [])),
            "newest_whole_at_kill": at_kill.get("newest_whole"),
            "resumed_from": [r["checkpoint"] for r in resumes],
            "kill_to_resume_s": round(resumes[0]["time"] - kill["killed_time"], 1) if resumes and kill.get(
                "killed") else None,
            "epochs_replayed": len(lines) - len({(r["stage"], r["epoch"]) for r in lines}),
            "final": {k: (round(m[k], 6), round(whole[k], 6)) for k in ("train_loss", "valid_loss", "fbeta")},
            "seconds": {"uninterrupted": round(whole_s, 1), "node_lost": round(lost_s, 1),
                        "time_lost": round(lost_s - whole_s, 1)}, "load_1m": round(os.getloadavg()[0], 1)}


def _trial_results(exp: Path) -> dict[str, list[dict]]:
    return {res.parent.name: [json.loads(line) for line in res.read_text().splitlines() if line.strip()]
            for res in exp.glob("sweep_trial_*/result.json")}


def node_sweep_section(args, tmp: Path, nodes: TwoNodeCluster) -> dict:
    import ray

    from raylessons.data.synth import synth
    from raylessons.sweep.run import SweepConfig, experiment_name, run_sweep

    root = synth("planet", tmp / "planet-nodes", n=96, size=64, seed=1)
    epochs = 3

    def config(storage: str, max_failures: int = 0) -> SweepConfig:
        return SweepConfig(task="planet", task_config={"data": str(root), "size": 32, "bs": 16, "arch": "resnet18"},
                           trials=4, max_concurrent=2, cpus_per_trial=1, epochs=epochs, scheduler="fifo",
                           configs=[{"stage1_lr": lr, "upper": lr / 10} for lr in (2e-2, 1e-2, 5e-3, 3e-3)],
                           lesson_first=False, band=100.0, warmup_epochs=0, finder_iters=20,
                           storage_path=str(tmp / storage), verbose=0, seed=0, max_failures=max_failures)

    nodes.ensure_b()
    hold = nodes.hold_head_cpu()
    t = time.perf_counter()
    run_sweep(config("sweeps-whole"))
    whole_s = time.perf_counter() - t
    ray.kill(hold)

    cfg = config("sweeps-lost", max_failures=1)
    exp = Path(cfg.storage_path) / experiment_name(cfg)
    b = nodes.ensure_b()
    victim: dict = {}

    def b_trial_mid_way() -> bool:
        for name, rows in _trial_results(exp).items():
            if any(r.get("node_id") == b.node_id for r in rows) and 1 <= len(rows) < epochs:
                victim["trial"] = name
                return True
        return False

    hold = nodes.hold_head_cpu()
    killer = kill_node_when(nodes.cluster, b, b_trial_mid_way, timeout=600, on_kill=lambda: ray.kill(hold))
    t = time.perf_counter()
    first = run_sweep(cfg)
    first_s = time.perf_counter() - t
    kill = killer.wait(timeout=30)
    if not kill.get("killed"):
        ray.kill(hold)
    nodes.ensure_b()
    results = _trial_results(exp)
    retried = [name for name, rows in results.items() if any("resumed_from_epochs" in r for r in rows)]
    return {"trials": cfg.trials, "node_killed": kill.get("killed", False), "killed_after_s": kill.get("waited_s"),
            "victim": victim.get("trial"), "retried_within_the_sweep": len(retried),
            "errored_in_the_end": sum(r["status"] == "error" for r in first["rows"]),
            "finished_in_the_end": sum(r["status"] == "finished" for r in first["rows"]),
            "ran_twice_to_completion": sum(sum(r["training_iteration_epochs"] == epochs for r in rows) > 1
                                           for rows in results.values()),
            "epochs_replayed": sum(max(0, len(rows) - epochs) for rows in results.values()),
            "seconds": {"uninterrupted": round(whole_s, 1), "node_lost": round(first_s, 1),
                        "time_lost": round(first_s - whole_s, 1)},
            "load_1m": round(os.getloadavg()[0], 1)}


def node_sections(args, tmp: Path, run: set) -> dict:
    nodes = TwoNodeCluster()
    out = {}
    try:
        if "node-train" in run:
            out["node_train"] = node_train_section(args, tmp, nodes)
            print("node lost, DDP:", out["node_train"], flush=True)
        if "node-sweep" in run:
            out["node_sweep"] = node_sweep_section(args, tmp, nodes)
            print("node lost, sweep:", out["node_sweep"], flush=True)
    finally:
        nodes.shutdown()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=10, help="Train workers killed in one run")
    ap.add_argument("--bodies", type=int, default=1000, help="malformed requests")
    ap.add_argument("--load-seconds", type=float, default=30.0, help="length of each replica-kill load run")
    ap.add_argument("--skip", default="",
                    help="comma-separated sections to leave out: serve, train, sweep, node-train, node-sweep")
    ap.add_argument("--only", default="", help="comma-separated sections to run (default: all but those skipped)")
    ap.add_argument("--node-epochs", type=int, default=4, help="epochs of the node-train plan (node lost half-way)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    sections = {"serve", "train", "sweep", *NODE_SECTIONS}
    run = (set(filter(None, args.only.split(","))) or sections) - set(filter(None, args.skip.split(",")))
    if run - sections:
        ap.error(f"unknown sections {sorted(run - sections)}; choose from {sorted(sections)}")
    tmp = Path(args.out or tempfile.mkdtemp(prefix="bench-faults-"))

    import ray

    figures = {}
    if run & {"serve", "train", "sweep"}:
        from raylessons.serving.local import direct_ingress

        args.serve_port = sl._free_port()
        with direct_ingress(args.serve_port):  # the app's Ingress answers HTTP itself, as in `raylessons serve`
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        try:
            if "serve" in run:
                figures["serve"] = serve_section(args, tmp)
            if "train" in run:
                figures["train"] = train_section(args, tmp)
                print("train:", figures["train"], flush=True)
            if "sweep" in run:
                figures["sweep"] = sweep_section(args, tmp)
                print("sweep:", figures["sweep"], flush=True)
        finally:
            ray.shutdown()
    if run & set(NODE_SECTIONS):  # a two-node cluster of its own
        figures.update(node_sections(args, tmp, run))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
