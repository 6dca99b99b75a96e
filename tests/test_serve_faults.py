"""Serve under faults: a model replica killed (SIGKILL) under steady load costs the clients nothing."""
import os
import signal
import socket
import threading
import time

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def planet(tmp_path_factory):
    """An untrained resnet18 Planet export at 32 px and one of its images."""
    from raylessons.data.synth import synth
    from raylessons.tasks.planet import Config, build_data, build_learner

    tmp = tmp_path_factory.mktemp("faults")
    root = synth("planet", tmp / "planet", n=24, size=64, seed=0)
    cfg = Config(data=str(root), size=32, bs=8, arch="resnet18")
    return build_learner(build_data(cfg), cfg).export(tmp / "export"), next((root / "train-jpg").glob("*.jpg"))


def _replica_pids(task: str) -> list[int]:
    """The live replica processes of `task` on this machine (Ray titles them `ray::ServeReplica:<app>:<name>`)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode(errors="replace")
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmdline.startswith(f"ray::ServeReplica:raylessons:{task}") and state != "Z":
            pids.append(int(pid))
    return sorted(pids)


def _retries_logged() -> int:
    """How many requests the ingress sent again because their replica died (from its log)."""
    import glob

    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    return sum(open(f, errors="replace").read().count("replica died with a request in flight")
               for f in glob.glob(f"{session}/logs/serve/replica_raylessons_Ingress_*.log"))


@pytest.mark.ray
def test_replica_killed_under_load_costs_no_request(ray_session, planet):
    from raylessons.serving import local

    export, image = planet
    url = local.start({"planet": str(export)}, port=_free_port(), replica_cpus=0.4,
                      deployments={"planet": {"num_replicas": 2}})
    try:
        pids = _replica_pids("planet")
        assert len(pids) == 2
        answers, stop = [], threading.Event()

        def user():  # one of 4 steady users: request after request until stopped
            with httpx.Client(base_url=url, timeout=60, trust_env=False) as c:
                while not stop.is_set():
                    t = time.monotonic()
                    r = c.post("/planet", content=image.read_bytes(), headers={"content-type": "image/jpeg"})
                    answers.append((t, r.status_code, r.text[:200]))

        users = [threading.Thread(target=user) for _ in range(4)]
        for u in users:
            u.start()
        time.sleep(3)
        killed_at = time.monotonic()
        os.kill(pids[0], signal.SIGKILL)  # a crash, not a graceful stop: requests in flight on it die with it
        time.sleep(6)
        stop.set()
        for u in users:
            u.join()
        assert [a for a in answers if a[1] != 200] == []  # no client saw the replica die
        print(f"{len(answers)} requests, {_retries_logged()} retried after the kill")
        assert sum(t < killed_at for t, _, _ in answers) >= 10 and sum(t > killed_at + 1 for t, _, _ in answers) >= 10
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as c:
            assert c.get("/healthz").json()["status"] == "ok"
        deadline = time.monotonic() + 90  # Serve replaces the dead replica
        while time.monotonic() < deadline and (len(_replica_pids("planet")) < 2 or pids[0] in _replica_pids("planet")):
            time.sleep(1)
        assert len(_replica_pids("planet")) == 2 and pids[0] not in _replica_pids("planet")
    finally:
        local.shutdown()
