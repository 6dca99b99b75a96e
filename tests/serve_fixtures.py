"""What tests/test_serve_*.py share: tiny exports of every task, one Serve application started once for all of
them (Ray and Serve take about a minute to start on 2 cores), and request helpers. conftest.py makes the
fixtures."""
from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

MAX_BODY = 200_000  # the app's body limit: small, for the 413 tests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A free port whose next port is free too (the shared app's and a second application's direct ingress)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def post_image(client, body: bytes, content_type: str = "image/jpeg", **params) -> httpx.Response:
    return client.post("/planet", content=body, headers={"content-type": content_type}, params=params)


def assert_matches(answer: dict, local, threshold: float = 0.2) -> None:
    """The server's answer equals the local `Predictor.predict` (tags, threshold, probabilities)."""
    tags, _, probs = local
    assert answer["tags"] == tags and answer["threshold"] == threshold
    assert list(answer["probs"].values()) == pytest.approx(probs.tolist(), abs=1e-4)


# --- tiny exports (untrained: fast) ---

def planet_export(tmp: Path) -> tuple[Path, list[Path]]:
    """A resnet18 export of a Planet look-alike at 32 px, and a few of its images."""
    from raylessons.data.synth import synth
    from raylessons.tasks.planet import Config, build_data, build_learner

    root = synth("planet", tmp / "planet", n=40, size=64, seed=0)
    cfg = Config(data=str(root), size=32, bs=8, arch="resnet18")
    learn = build_learner(build_data(cfg), cfg)
    export = learn.export(tmp / "export")
    return export, sorted((root / "train-jpg").glob("*.jpg"))[:6]


def other_planet_export(planet: tuple[Path, list[Path]], tmp: Path) -> Path:
    """A second planet export: same data and classes, other (seed 1) weights, so its answers differ."""
    import torch

    from raylessons.tasks.planet import Config, build_data, build_learner

    root = planet[1][0].parent.parent
    torch.manual_seed(1)
    cfg = Config(data=str(root), size=32, bs=8, arch="resnet18")
    return build_learner(build_data(cfg), cfg).export(tmp / "export")


def spatial_exports(tmp: Path) -> dict:
    """CamVid (U-Net) and head-pose exports on tiny look-alikes, with a few of their images."""
    from raylessons.data.synth import synth
    from raylessons.tasks import camvid, head_pose

    cv_root = synth("camvid", tmp / "camvid", n=6, size=(48, 64), seed=0)
    cv_cfg = camvid.Config(data=str(cv_root), size=[32, 48], bs=2, arch="resnet18")
    cv_export = camvid.build_learner(camvid.build_data(cv_cfg), cv_cfg).export(tmp / "camvid-export")
    hp_root = synth("biwi", tmp / "biwi", persons=13, frames=1, seed=0)
    hp_cfg = head_pose.Config(data=str(hp_root), size=[24, 32], bs=4, arch="resnet18")
    hp_export = head_pose.build_learner(head_pose.build_data(hp_cfg), hp_cfg).export(tmp / "head-pose-export")
    return {"camvid": (cv_export, sorted((cv_root / "images").glob("*.png"))),
            "head_pose": (hp_export, sorted(hp_root.glob("*/*_rgb.jpg")))}


def sentiment_export(tmp: Path) -> Path:
    """A tiny AWD-LSTM classifier export (max_len 20 tokens, to see truncation)."""
    from raylessons.data.synth.imdb import synth
    from raylessons.data.text import TextList
    from raylessons.text_learner import AWD_LSTM, text_classifier_learner

    root = synth(tmp / "imdb", n_train=30, n_test=10, n_unsup=0, n_sample=0)
    data = (TextList.from_folder(root).split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]).databunch(bs=8))
    learn = text_classifier_learner(data, AWD_LSTM, config=dict(emb_sz=16, n_hid=24, n_layers=2), max_len=20,
                                    bptt=10)
    return learn.export(tmp / "sentiment-export")


# --- one Ray session and one Serve application for every test file that asks ---

class SharedServe:
    """Starts Ray (and the app) on first use; conftest stops both before a test that starts a Ray of its own,
    and at the end of the session. `starts` counts the Serve start-ups."""

    def __init__(self):
        self.url: str | None = None
        self.starts = 0
        self._owns_ray = False
        self._port = free_port()

    def ray(self):
        """The Ray session, started (2 CPUs, quiet) unless one is running; the app's Ingress will answer HTTP
        itself (Serve's direct ingress), as in `raylessons serve`."""
        import ray

        from raylessons.serving.local import init_ray_direct

        if not ray.is_initialized():
            self._port = free_port_pair()
            # a second port for the timeout test's second application (its Ingress answers there and via the proxy)
            init_ray_direct(self._port, ports=2, num_cpus=2, dashboard=False)
            self._owns_ray = True
        return ray

    def start(self, exports: dict[str, str]) -> str:
        """The app's URL: every task's export served at http://127.0.0.1:<free port>."""
        if self.url is None:
            from raylessons.serving import start

            self.ray()
            # 0.3 CPU per model: room is left for a second planet replica and the timeout test's extra application
            self.url = start(exports, port=self._port, max_body_bytes=MAX_BODY, batch_wait_timeout_s=0.05,
                             replica_cpus=0.3)
            self.starts += 1
        return self.url

    def stop(self) -> None:
        import ray

        if self.url is not None and ray.is_initialized():
            from ray import serve

            serve.shutdown()
        self.url = None
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
