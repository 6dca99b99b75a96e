"""Swapping a served model live: nothing dropped under a trickle of requests, and a refused swap keeps the old
model answering (the shared app over Ray: see conftest.py)."""
from __future__ import annotations

import json

import httpx
import pytest

from raylessons.errors import ConfigError

pytestmark = pytest.mark.ray


def test_swap_under_a_trickle_drops_nothing(serve_url, planet_export, other_planet_export, planet_predictor):
    import threading
    import time

    from raylessons.inference import Predictor
    from raylessons.serving import swap

    image = planet_export[1][0]
    old = planet_predictor.predict(image)[2].tolist()
    new = Predictor.from_export(other_planet_export).predict(image)[2].tolist()
    assert max(abs(a - b) for a, b in zip(old, new)) > 1e-3  # the two models are told apart by their answers
    answers, stop = [], threading.Event()

    def trickle():  # one request every 20 ms until stopped: (sent at, status, probabilities)
        with httpx.Client(base_url=serve_url, timeout=60, trust_env=False) as c:
            while not stop.is_set():
                t = time.monotonic()
                r = c.post("/planet", content=image.read_bytes(), headers={"content-type": "image/jpeg"})
                answers.append((t, r.status_code, list(r.json()["probs"].values()) if r.status_code == 200
                                else r.text))
                time.sleep(0.02)

    def model_of(probs) -> str:
        for name, ref in (("old", old), ("new", new)):
            if probs == pytest.approx(ref, abs=1e-4):
                return name
        return f"neither: {probs}"

    def run_swap(export) -> tuple[float, float]:
        thread = threading.Thread(target=trickle)
        answers.clear(), stop.clear(), thread.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        swap({"planet": str(export)})  # returns once the replica serves the new export
        t1 = time.monotonic()
        time.sleep(1.0)
        stop.set(), thread.join()
        return t0, t1

    t0, t1 = run_swap(other_planet_export)
    assert [a for a in answers if a[1] != 200] == []  # nothing dropped or failed
    seen = [(t, model_of(p)) for t, _, p in answers]
    assert {m for _, m in seen} <= {"old", "new"}  # each request answered wholly by one model
    assert all(m == "old" for t, m in seen if t < t0) and all(m == "new" for t, m in seen if t > t1)
    assert sum(t < t0 for t, _ in seen) >= 5 and sum(t > t1 for t, _ in seen) >= 5
    with httpx.Client(base_url=serve_url, timeout=60, trust_env=False) as c:
        info = {m["task"]: m for m in c.get("/models").json()["models"]}["planet"]
        assert info["export"] == str(other_planet_export.resolve())
        assert info["exported_at"] == json.loads((other_planet_export / "meta.json").read_text())["exported_at"]
        camvid = {m["task"]: m for m in c.get("/models").json()["models"]}["camvid"]["export"]
        with pytest.raises(ConfigError, match="holds a 'segmentation' model"):  # a bad swap fails before Serve
            swap({"planet": camvid})
        run_swap(planet_export[0])  # and back, for the other tests
        assert [a for a in answers if a[1] != 200] == [] and model_of(answers[-1][2]) == "old"
        assert {m["task"]: m for m in c.get("/models").json()["models"]}["planet"]["export"] == str(
            planet_export[0].resolve())


def test_refused_swap_keeps_the_old_model(planet_export, other_planet_export, spatial_exports, serve_ray):
    """What a `serve deploy` with a bad `user_config.export` does to a replica: its methods, called in a Ray
    worker as Serve would."""
    import shutil

    ray = serve_ray

    def scenario(export: str, root: str, image: bytes) -> list:  # local: shipped by value to the worker
        import asyncio

        from raylessons.data.imageio import decode_image_bytes
        from raylessons.serving.replicas import ImageModel, _forward_groups

        replica = ImageModel.func_or_class("planet", export, export_root=root)

        def step(user_config: dict) -> tuple:
            asyncio.run(replica.reconfigure(user_config))
            info = asyncio.run(replica.info())
            predictor = replica.loaded.predictor  # what the next request uses (@serve.batch needs a replica)
            x, _ = predictor.prepare(decode_image_bytes(image))
            return info["export"], info.get("swap_error"), _forward_groups([(predictor, x)])[0].tolist()

        fresh = ImageModel.func_or_class("planet", export, export_root=root)
        try:  # at deploy time a bad user_config fails the replica, naming the field
            asyncio.run(fresh.reconfigure({"threads": 0}))
            deploy_error = None
        except Exception as e:
            deploy_error = f"{type(e).__name__}: {e}"
        return [deploy_error, step({})] + [step(cfg) for cfg in (
            {"export": "empty"}, {"export": "camvid-export"}, {"export": "../../etc"},  # refused
            {"max_batch_sise": 4},  # a misspelt setting: refused, the settings and model stay
            {"export": "other-export", "max_batch_size": 4},  # relative to the root: swapped
            {"max_batch_size": 8},  # no export named: the current one stays
            {"export": export})]  # and back

    root = planet_export[0].parent  # the export root: the first export and copies of the others lie inside it
    other = shutil.copytree(other_planet_export, root / "other-export", dirs_exist_ok=True)
    shutil.copytree(spatial_exports["camvid"][0], root / "camvid-export", dirs_exist_ok=True)
    (root / "empty").mkdir(exist_ok=True)
    first, other = str(planet_export[0].resolve()), str(other.resolve())
    steps = ray.get(ray.remote(num_cpus=0)(scenario).remote(first, str(root), planet_export[1][0].read_bytes()))
    deploy_error, start, missing, wrong_kind, escape, misspelt, swapped, kept, back = steps
    assert deploy_error.startswith("ConfigError: planet: invalid user_config: threads: Input should be greater")
    assert start[:2] == (first, None)
    for (export, error, probs), message in ((missing, "meta.json missing"), (wrong_kind, "holds a 'segmentation'"),
                                            (escape, "outside export_root")):
        assert export == first and message in error and probs == start[2]  # the old model still answers
    assert misspelt[0] == first and "max_batch_sise: Extra inputs are not permitted" in misspelt[1]
    assert swapped[:2] == (other, None) and swapped[2] != pytest.approx(start[2], abs=1e-4)
    assert kept == swapped
    assert back == start


def test_per_tag_thresholds_decide_the_served_tags(serve_url, planet_export, planet_predictor, tmp_path):
    """An export carrying a threshold per tag (MultiLabelInterpretation.optimal_thresholds) is served with them:
    an image whose tags flip between the global 0.2 and the per-tag thresholds gets the per-tag tags; `?threshold=`
    still decides every tag with one threshold; GET /models shows the thresholds."""
    import shutil

    from raylessons.serving import swap

    image = planet_export[1][0]
    classes = planet_predictor.classes
    global_tags, _, probs = planet_predictor.predict(image, threshold=0.2)
    probs = dict(zip(classes, probs.tolist()))
    # a tag above 0.2 gets a threshold above its probability, one below 0.2 a threshold below it: both flip
    above = [c for c in classes if 0.2 < probs[c] < 0.95][:2]
    below = [c for c in classes if 0.002 < probs[c] < 0.2][:2]
    thresholds = {**{c: round(probs[c] + 0.04, 4) for c in above}, **{c: round(probs[c] / 2, 4) for c in below}}
    expected = sorted((set(global_tags) - set(above)) | set(below), key=classes.index)
    assert expected != global_tags and thresholds
    export = tmp_path / "planet-per-tag"
    shutil.copytree(planet_export[0], export)
    meta = json.loads((export / "meta.json").read_text())
    (export / "meta.json").write_text(json.dumps({**meta, "thresholds": thresholds}))
    swap({"planet": str(export)})
    try:
        with httpx.Client(base_url=serve_url, timeout=60, trust_env=False) as c:
            post = lambda **params: c.post("/planet", content=image.read_bytes(),  # noqa: E731
                                           headers={"content-type": "image/jpeg"}, params=params).json()
            answer = post()
            assert answer["tags"] == expected
            assert answer["thresholds"] == pytest.approx({c: thresholds.get(c, 0.2) for c in classes})
            overridden = post(threshold=0.2)
            assert overridden["tags"] == global_tags and "thresholds" not in overridden
            info = {m["task"]: m for m in c.get("/models").json()["models"]}["planet"]
            assert info["thresholds"] == thresholds and info["threshold"] == 0.2
    finally:
        swap({"planet": str(planet_export[0])})  # back, for the other tests
