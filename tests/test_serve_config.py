"""`serve run serve/config.yaml`, the file unedited, as a user runs it from the repository root: the four models
start from the export paths the config names (under a temporary HOME holding tiny exports of every task), and
every route answers. One Ray instance of its own, in the `serve run` process."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "serve" / "config.yaml"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# serve/README.md's `serve run` with Serve's direct ingress: the Ingress answers at 8001 itself, the proxy at 8000
DIRECT_PORT = 8001


def _listener(port: int) -> str:
    """The command line of the process listening on `port` (loopback checked)."""
    from raylessons.testing.faults import is_loopback, listening_sockets

    (owner,) = {(addr, pid) for addr, lport, pid in listening_sockets() if lport == port}
    assert is_loopback(owner[0]), owner
    return Path(f"/proc/{owner[1]}/cmdline").read_bytes().split(b"\0")[0].decode()


@pytest.fixture(scope="module", params=["proxy", "direct"])
def served_config(request, tmp_path_factory, planet_export, spatial_exports, sentiment_export):
    """The URL of `serve run serve/config.yaml`, with HOME a temporary directory holding an export of every task
    where the config looks for it: as is (Serve's proxy at the config's port), and with serve/README.md's
    direct-ingress variables (the Ingress answers at DIRECT_PORT itself, the proxy still at the config's port)."""
    config = yaml.safe_load(CONFIG.read_text())
    (app,) = config["applications"]
    host, port = config["http_options"]["host"], config["http_options"]["port"]
    assert host == "127.0.0.1"
    for p in (port, DIRECT_PORT) if request.param == "direct" else (port,):
        if not _port_free(host, p):
            pytest.fail(f"port {p}, which `serve run serve/config.yaml` serves on here, is in use by another process")
    home = tmp_path_factory.mktemp("home")
    built = {"planet": planet_export[0], "camvid": spatial_exports["camvid"][0],
             "head_pose": spatial_exports["head_pose"][0], "sentiment": sentiment_export}
    assert set(app["args"]["exports"]) == set(built)
    for task, path in app["args"]["exports"].items():
        shutil.copytree(built[task], Path(path.replace("~", str(home), 1)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a Ray of its own, not the tests'
    if request.param == "direct":
        from raylessons.serving.local import direct_ingress_env

        env.update(direct_ingress_env(DIRECT_PORT))
    log = (home / "serve-run.log").open("wb")
    serve_cli = Path(sys.executable).parent / "serve"  # the CLI of the Ray the tests run
    proc = subprocess.Popen([str(serve_cli), "run", "serve/config.yaml"], cwd=ROOT, env={**env, "HOME": str(home)},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{DIRECT_PORT if request.param == 'direct' else port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve run exited with {proc.returncode}:\n"
                            f"{(home / 'serve-run.log').read_text(errors='replace')[-4000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=5, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("serve run did not answer /healthz with 200 within 300 s:\n"
                            f"{(home / 'serve-run.log').read_text(errors='replace')[-4000:]}")
            time.sleep(1)
        if request.param == "direct":
            assert _listener(DIRECT_PORT).startswith("ray::ServeReplica:raylessons:Ingress")
            assert httpx.get(f"http://{host}:{port}/healthz", timeout=30, trust_env=False).status_code == 200
        assert _listener(port).startswith("ray::ProxyActor")
        yield url, home
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: serve run shuts the application and its Ray down
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_serve_run_config_starts_every_model_and_answers_every_route(served_config, planet_export,
                                                                     spatial_exports):
    url, home = served_config
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as c:
        health = c.get("/healthz")
        assert health.json() == {"status": "ok", "models": dict.fromkeys(
            ["camvid", "head_pose", "planet", "sentiment"], "ok")}
        models = {m["task"]: m for m in c.get("/models").json()["models"]}
        assert sorted(models) == ["camvid", "head_pose", "planet", "sentiment"]
        for task, where in [("planet", "planet-planet"), ("sentiment", "imdb_clas-imdb")]:
            assert models[task]["export"] == str(home / "raylessons_results" / where / "export")
        # the config's user_config reached the replicas
        assert models["camvid"]["batching"]["max_batch_size"] == 8
        assert models["sentiment"]["batching"]["max_batch_size"] == 32

        image = planet_export[1][0].read_bytes()
        planet = c.post("/planet", content=image, headers={"content-type": "image/jpeg"})
        assert planet.status_code == 200 and set(planet.json()["probs"]) == set(models["planet"]["classes"])
        frame = spatial_exports["camvid"][1][0].read_bytes()
        mask = c.post("/camvid", params={"format": "json"}, content=frame, headers={"content-type": "image/png"})
        assert mask.status_code == 200 and mask.json()["encoding"] == "rle"
        face = spatial_exports["head_pose"][1][0].read_bytes()
        point = c.post("/headpose", content=face, headers={"content-type": "image/jpeg"})
        assert point.status_code == 200 and set(point.json()) >= {"row", "col"}
        review = c.post("/sentiment", json={"text": "a fine film"})
        assert review.status_code == 200 and review.json()["label"] in ("neg", "pos")

        assert c.get("/docs").status_code == 200
        assert {"/planet", "/camvid", "/headpose", "/sentiment", "/models", "/healthz"} <= set(
            c.get("/openapi.json").json()["paths"])
        missing = c.get("/nowhere")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        bad = c.post("/planet", content=b"not an image", headers={"content-type": "image/jpeg"})
        assert bad.status_code == 400 and bad.json()["error"] == "bad_image"


def test_serve_readme_sets_the_direct_ingress_variables_the_library_uses():
    """serve/README.md's `serve run` command with direct ingress sets exactly `direct_ingress_env(8001)`."""
    import re

    from raylessons.serving.local import direct_ingress_env

    text = (ROOT / "serve" / "README.md").read_text()
    assert dict(re.findall(r"(RAY_SERVE_[A-Z_]+)=(\S+)", text.split("### The request path")[1].split("```")[1])) \
        == direct_ingress_env(DIRECT_PORT)
