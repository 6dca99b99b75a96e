"""Storage that nodes share: runs, checkpoints, resume, sweeps and served exports in an S3 bucket.

The bucket is real S3 over HTTP: moto's server, started here on a free local port (not a mock of the client).
Ray's workers reach it through the AWS variables set before Ray starts (they inherit the driver's environment).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from raylessons import storage
from raylessons.errors import ConfigError, DataError

BUCKET = "raylessons-test"
PLAN = [{"freeze_to": -1, "epochs": 1, "max_lr": "slice(1e-2)"},
        {"unfreeze": True, "epochs": 2, "max_lr": [1e-4, 1e-2]}]


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """s3://raylessons-test on a local moto server; the AWS variables (and the download cache) set for this
    module and every Ray process it starts, put back afterwards."""
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}", storage.CACHE_VAR: str(tmp_path_factory.mktemp("cache"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3 = pytest.importorskip("boto3")
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    yield f"s3://{BUCKET}"
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="module")
def ray_s3(bucket):
    """One Ray session for the module, started after the bucket's variables are set."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# ----- the URI helper
def test_uris_are_parsed_and_local_paths_pass_through(tmp_path):
    assert storage.is_uri("s3://b/p") and not storage.is_uri(str(tmp_path)) and not storage.is_uri(tmp_path)
    assert storage.normalize("s3://b//runs/./x/") == "s3://b/runs/x"
    assert storage.join("s3://b/runs", "name", "export") == "s3://b/runs/name/export"
    assert storage.join(tmp_path, "name") == str(tmp_path / "name")
    assert storage.fs_path("gs://b/a/b") == "b/a/b" and storage.fs_path("s3://b") == "b"
    assert storage.within("s3://b/exports/planet", "s3://b/exports/") and storage.within("s3://b/x", "s3://b/x")
    assert not storage.within("s3://b/exports-old/planet", "s3://b/exports")
    assert not storage.within("s3://c/exports/planet", "s3://b/exports")
    assert storage.uri_of(type("F", (), {"type_name": "s3"})(), "b/k") == "s3://b/k"
    for bad, message in (("http://host/x", "unsupported scheme 'http'"), ("s3://", "names no bucket"),
                         ("s3://b/../x", "'..' is not allowed")):
        with pytest.raises(ConfigError, match=message):
            storage.normalize(bad)


def test_export_root_for_uris(tmp_path):
    from raylessons.serving.exports import resolve_export

    root = "s3://b/exports"
    assert resolve_export("planet", "s3://b/exports/planet/export", root) == "s3://b/exports/planet/export"
    assert resolve_export("planet", "planet/export", root) == "s3://b/exports/planet/export"  # relative: in root
    assert resolve_export("planet", "s3://b//other/export/", None) == "s3://b/other/export"
    for path in ("s3://b/exports-old/x", "s3://c/exports/x", "../x", "/abs/export", str(tmp_path)):
        with pytest.raises(ConfigError, match="outside export_root"):
            resolve_export("planet", path, root)
    with pytest.raises(ConfigError, match="outside export_root"):  # a URI when the root is a directory
        resolve_export("planet", "s3://b/exports/x", str(tmp_path))
    assert resolve_export("planet", str(tmp_path), None) == tmp_path.resolve()  # local paths: as before


def test_missing_buckets_and_keys_fail_naming_the_uri(bucket, planet_export):
    from raylessons.serving.exports import ExportKind, read_export

    with pytest.raises(storage.StorageError, match=r"^s3://no-such-bucket/x/meta.json: reading failed: no such "
                                                   r"bucket 'no-such-bucket'$") as e:
        storage.read_text("s3://no-such-bucket/x/meta.json")
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no pyarrow trace chained
    with pytest.raises(storage.StorageError, match=rf"^{bucket}/nothing/here: reading failed: not found$"):
        storage.read_text(f"{bucket}/nothing/here")
    kind = ExportKind("multi_category")
    with pytest.raises(DataError, match=rf"^{bucket}/missing/export: not an export \(meta.json missing\)$"):
        read_export("planet", f"{bucket}/missing/export", None, kind)
    with pytest.raises(DataError, match="^s3://no-such-bucket/export/meta.json: reading failed: no such bucket "
                                        "'no-such-bucket'$"):
        read_export("planet", "s3://no-such-bucket/export", None, kind)
    with pytest.raises(storage.StorageError, match="no such bucket 'no-such-bucket'"):
        storage.upload(planet_export[0], "s3://no-such-bucket/export")


# ----- Ray Train: checkpoints in the bucket, a killed worker, resume from the bucket
@pytest.mark.ray
def test_a_run_in_a_bucket_survives_a_killed_worker_and_exports_there(ray_s3, bucket, planet_dir):
    from raylessons.distributed.checkpoints import checkpoint_dirs, is_complete
    from raylessons.distributed.train import TrainRun, epoch_rows, fit_plan
    from raylessons.learner import load_learner
    from raylessons.serving.exports import local_export
    from raylessons.testing import faults

    run_dir = storage.join(bucket, "runs", "killed")
    run = TrainRun(task="planet", plan=PLAN, task_config={"data": str(planet_dir), "size": 32, "bs": 16,
                                                          "arch": "resnet18"},
                   name="killed", storage_path=f"{bucket}/runs", num_workers=1, max_failures=1, seed=0)
    killed: list = []

    def kill_when_first_checkpoint_is_whole():  # SIGKILL the worker mid-epoch, once the bucket has a checkpoint
        first, end = storage.join(run_dir, "checkpoint_s00_e000"), time.time() + 300
        while time.time() < end and not is_complete(first):
            time.sleep(0.2)
        time.sleep(0.3)
        pids = faults.train_workers()  # this module's Ray's workers only
        if pids:
            newest = max(Path(d).name for d in checkpoint_dirs(run_dir) if is_complete(d))
            faults.sigkill(pids[-1])
            killed.append((pids[-1], newest))

    watcher = threading.Thread(target=kill_when_first_checkpoint_is_whole, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    result = fit_plan(run)
    watcher.join()
    print(f"run with a restart: {time.monotonic() - t0:.0f} s")
    ((pid, newest),) = killed
    assert pid not in faults.train_workers()
    m = result["metrics"]
    assert m["done"] is True and m["training_iteration_epochs"] == 3
    # resumed from the newest whole checkpoint in the bucket (recorded there, as resumes.jsonl is on disk)
    (resume,) = [json.loads(x) for x in storage.read_text(storage.join(run_dir, "resumes.jsonl")).splitlines()]
    assert resume["checkpoint"] == newest
    assert m["resumed_from_epochs"] == {"checkpoint_s00_e000": 1, "checkpoint_s01_e000": 2}[newest]
    # everything landed in the bucket: URIs back, whole tracked checkpoints, the table, TensorBoard, the export
    assert result["export"] == f"{run_dir}/export" and result["path"] == run_dir
    assert result["checkpoint"] == f"{run_dir}/checkpoint_s01_e001"
    ckpts = checkpoint_dirs(run_dir)
    assert Path(ckpts[-1]).name == "checkpoint_s01_e001" and all(is_complete(d) for d in ckpts)
    assert len(ckpts) <= run.num_to_keep
    assert len(epoch_rows(run_dir)) == 3  # the driver read the table from the bucket
    assert json.loads(storage.read_text(f"{run_dir}/run.json"))["storage_path"] == f"{bucket}/runs"
    events = [n for n in storage.file_sizes(f"{run_dir}/tensorboard") if n.startswith("events.out.tfevents.")]
    assert len(events) == 2  # the restarted rank 0 added its own file beside the first one's
    learn = load_learner(local_export(result["export"]))  # downloaded once into the cache, then loaded
    assert learn.export_meta["metrics"]["valid_loss"] == pytest.approx(m["valid_loss"], rel=1e-5)
    tags, _, probs = learn.predict(next((planet_dir / "train-jpg").glob("*.jpg")))
    assert probs.shape == (len(learn.data.classes),)


# ----- Ray Tune: a sweep whose experiment is in the bucket
@pytest.mark.ray
def test_a_sweep_in_a_bucket_writes_results_and_best_export_there(ray_s3, bucket, planet_dir):
    from raylessons.serving.exports import local_export
    from raylessons.sweep import SweepConfig, run_sweep

    points = [{"stage1_lr": 2e-2, "upper": 2e-3, "ratio": 10.0, "schedule": "two_stage", "stage1_frac": 0.5},
              {"stage1_lr": 1e-2, "upper": 1e-3, "ratio": 10.0, "schedule": "two_stage", "stage1_frac": 0.5}]
    cfg = SweepConfig(task="planet", task_config={"data": str(planet_dir), "size": 32, "bs": 16, "arch": "resnet18"},
                      trials=2, max_concurrent=2, epochs=2, scheduler="fifo", configs=points, lesson_first=False,
                      warmup_epochs=1, finder_iters=20, storage_path=f"{bucket}/sweeps", name="tiny",
                      metric="valid_loss", mode="min")
    t0 = time.monotonic()
    result = run_sweep(cfg)
    print(f"sweep: {time.monotonic() - t0:.0f} s")
    where = f"{bucket}/sweeps/tiny"
    assert result["path"] == where and not result["errors"]
    assert [r["status"] for r in result["rows"]] == ["finished", "finished"]
    assert result["best"]["export"] == f"{where}/best_export"
    files = storage.file_sizes(where)
    for name in ("sweep.json", "finders.json", "results.csv", "results.md", "metric_vs_lr.png",
                 "best_export/meta.json", "best_export/model.pt"):
        assert files.get(name, 0) > 0, name
    # Tune's own trial directories are in the bucket, with each trial's plan and epoch table (synced artifacts)
    plans = [n for n in files if n.endswith("/plan.json")]
    assert len(plans) == 2 and all(n.startswith("sweep_trial_") for n in plans)
    assert sum(n.endswith("/epochs.jsonl") for n in files) == 2
    table = storage.read_text(f"{where}/results.md").splitlines()
    assert table[0].startswith("| trial | valid_loss |") and len(table) == 4
    meta = json.loads((local_export(result["best"]["export"]) / "meta.json").read_text())
    assert meta["metrics"]["valid_loss"] == pytest.approx(result["best"]["valid_loss"], rel=1e-5)


# ----- Ray Serve: replicas load an export from the bucket
@pytest.mark.ray
def test_a_replica_serves_and_swaps_exports_from_the_bucket(ray_s3, bucket, planet_export, other_planet_export,
                                                             planet_predictor):
    from raylessons.serving.app import build_app
    from raylessons.serving.exports import local_export
    from raylessons.serving.routes import checked_export

    root = f"{bucket}/exports"
    first, other = f"{root}/planet/export", f"{root}/planet-2/export"
    storage.upload(planet_export[0], first)
    storage.upload(other_planet_export, other)
    storage.upload(planet_export[0], f"{bucket}/elsewhere/export")
    export, meta = checked_export("planet", first, root)  # what build_app and swap check, on the driver
    assert export == first and meta["label_kind"] == "multi_category"
    build_app({"exports": {"planet": first}, "export_root": root})  # the application accepts the URI

    def scenario(export: str, root: str, image: bytes) -> list:  # local: shipped by value to a Ray worker
        import asyncio

        from raylessons.data.imageio import decode_image_bytes
        from raylessons.serving.replicas import ImageModel, _forward_groups

        replica = ImageModel.func_or_class("planet", export, export_root=root)  # what Serve's replica does

        def step(user_config: dict) -> tuple:
            asyncio.run(replica.reconfigure(user_config))
            info = asyncio.run(replica.info())
            predictor = replica.loaded.predictor
            x, _ = predictor.prepare(decode_image_bytes(image))
            return info["export"], info.get("swap_error"), _forward_groups([(predictor, x)])[0].tolist()

        return [step({}), step({"export": "planet-2/export"}), step({"export": f"{root}/../elsewhere/export"}),
                step({"export": root.replace("/exports", "/elsewhere/export")}), step({"export": export})]

    image = planet_export[1][0]
    steps = ray_s3.get(ray_s3.remote(num_cpus=0)(scenario).remote(first, root, image.read_bytes()))
    start, swapped, dotdot, outside, back = steps
    local = planet_predictor.predict(image)[2].tolist()
    assert start[:2] == (first, None) and start[2] == pytest.approx(local, abs=1e-5)
    assert swapped[:2] == (other, None) and swapped[2] != pytest.approx(start[2], abs=1e-4)
    for (export, error, probs), message in ((dotdot, "'..' is not allowed"), (outside, "outside export_root")):
        assert export == other and message in error and probs == swapped[2]  # refused: the old model answers
    assert back == start
    # a URI is downloaded once per machine into the cache, keyed by the URI and its meta.json
    cached = local_export(first)
    assert cached == local_export(first) != local_export(other) and cached.parent == storage.cache_dir() / "downloads"
    assert (cached / "model.pt").read_bytes() == (planet_export[0] / "model.pt").read_bytes()
