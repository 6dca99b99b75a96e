"""The Serve app end to end (one app for the module), its HTTP helpers, its builder and the client."""
from __future__ import annotations

import asyncio
import io
import json
import pickle
import re
import socket
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Query, Request  # module level: this file's string annotations resolve here
from PIL import Image

from raylessons.errors import ConfigError, DataError
from raylessons.serving import http

MAX_BODY = 200_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(width: int = 8, height: int = 8, fmt: str = "PNG") -> bytes:
    """A plain green image, encoded (PNG unless `fmt` says otherwise)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, format=fmt)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height (CRC fixed, so only the size check can reject it)."""
    data = bytearray(_png())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# --- fixtures: a tiny export, one Serve app for the module ---

@pytest.fixture(scope="module")
def planet_export(tmp_path_factory) -> tuple[Path, list[Path]]:
    """An (untrained: fast) resnet18 export of a Planet look-alike at 32 px, and a few of its images."""
    from raylessons.data.synth import synth
    from raylessons.tasks.planet import Config, build_data, build_learner

    tmp = tmp_path_factory.mktemp("serve")
    root = synth("planet", tmp / "planet", n=40, size=64, seed=0)
    cfg = Config(data=str(root), size=32, bs=8, arch="resnet18")
    learn = build_learner(build_data(cfg), cfg)
    export = learn.export(tmp / "export")
    return export, sorted((root / "train-jpg").glob("*.jpg"))[:6]


@pytest.fixture(scope="module")
def predictor(planet_export):
    from raylessons.inference import Predictor

    return Predictor.from_export(planet_export[0])


@pytest.fixture(scope="module")
def spatial_exports(tmp_path_factory) -> dict:
    """Untrained CamVid (U-Net) and head-pose exports on tiny look-alikes, with a few of their images."""
    from raylessons.data.synth import synth
    from raylessons.tasks import camvid, head_pose

    tmp = tmp_path_factory.mktemp("serve-spatial")
    cv_root = synth("camvid", tmp / "camvid", n=6, size=(48, 64), seed=0)
    cv_cfg = camvid.Config(data=str(cv_root), size=[32, 48], bs=2, arch="resnet18")
    cv_export = camvid.build_learner(camvid.build_data(cv_cfg), cv_cfg).export(tmp / "camvid-export")
    hp_root = synth("biwi", tmp / "biwi", persons=13, frames=1, seed=0)
    hp_cfg = head_pose.Config(data=str(hp_root), size=[24, 32], bs=4, arch="resnet18")
    hp_export = head_pose.build_learner(head_pose.build_data(hp_cfg), hp_cfg).export(tmp / "head-pose-export")
    return {"camvid": (cv_export, sorted((cv_root / "images").glob("*.png"))),
            "head_pose": (hp_export, sorted(hp_root.glob("*/*_rgb.jpg")))}


@pytest.fixture(scope="module")
def sentiment_export(tmp_path_factory) -> Path:
    """An untrained tiny AWD-LSTM classifier export (max_len 20 tokens, to see truncation)."""
    from raylessons.data.synth.imdb import synth
    from raylessons.data.text import TextList
    from raylessons.text_learner import AWD_LSTM, text_classifier_learner

    tmp = tmp_path_factory.mktemp("serve-text")
    root = synth(tmp / "imdb", n_train=30, n_test=10, n_unsup=0, n_sample=0)
    data = (TextList.from_folder(root).split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]).databunch(bs=8))
    learn = text_classifier_learner(data, AWD_LSTM, config=dict(emb_sz=16, n_hid=24, n_layers=2), max_len=20,
                                    bptt=10)
    return learn.export(tmp / "sentiment-export")


@pytest.fixture(scope="module")
def server(ray_session, planet_export, spatial_exports, sentiment_export) -> str:
    """The app at http://127.0.0.1:<free port>, with a small body limit for the 413 tests."""
    from ray import serve

    from raylessons.serving import start

    exports = {"planet": str(planet_export[0]), **{t: str(e[0]) for t, e in spatial_exports.items()},
               "sentiment": str(sentiment_export)}
    # 0.3 CPU per model: room is left for a second planet replica and the extra application of the timeout test
    url = start(exports, port=_free_port(), max_body_bytes=MAX_BODY, batch_wait_timeout_s=0.05, replica_cpus=0.3)
    yield url
    serve.shutdown()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, timeout=60, trust_env=False) as c:
        yield c


def _post_image(client, body: bytes, content_type: str = "image/jpeg", **params) -> httpx.Response:
    return client.post("/planet", content=body, headers={"content-type": content_type}, params=params)


def _assert_matches(answer: dict, local, threshold: float = 0.2) -> None:
    """The server's answer equals the local `Predictor.predict` (tags, threshold, probabilities)."""
    tags, _, probs = local
    assert answer["tags"] == tags and answer["threshold"] == threshold
    assert list(answer["probs"].values()) == pytest.approx(probs.tolist(), abs=1e-4)


# --- round trips ---

@pytest.mark.ray
def test_raw_body_matches_local_predict(client, planet_export, predictor):
    path = planet_export[1][0]
    r = _post_image(client, path.read_bytes())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"tags", "probs", "threshold"}
    assert list(answer["probs"]) == predictor.classes
    _assert_matches(answer, predictor.predict(path))


@pytest.mark.ray
def test_png_and_octet_stream(client, predictor):
    img = Image.new("RGB", (50, 40), (120, 90, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    for ctype in ("image/png", "application/octet-stream"):
        r = _post_image(client, buf.getvalue(), ctype)
        assert r.status_code == 200, r.text
        _assert_matches(r.json(), predictor.predict(img))


@pytest.mark.ray
def test_multipart_any_field_name(client, planet_export, predictor):
    path = planet_export[1][1]
    r = client.post("/planet", files={"whatever": (path.name, path.read_bytes(), "image/jpeg")},
                    data={"note": "a text field first"})
    assert r.status_code == 200, r.text
    _assert_matches(r.json(), predictor.predict(path))


@pytest.mark.ray
def test_concurrent_requests_are_batched_in_order(server, planet_export, predictor):
    paths = planet_export[1]

    async def send():
        async with httpx.AsyncClient(base_url=server, timeout=60, trust_env=False) as c:
            return await asyncio.gather(*(c.post("/planet", content=p.read_bytes(),
                                                 headers={"content-type": "image/jpeg"}) for p in paths))

    for path, r in zip(paths, asyncio.run(send())):
        assert r.status_code == 200, r.text
        _assert_matches(r.json(), predictor.predict(path))


@pytest.mark.ray
def test_threshold_override(client, planet_export, predictor):
    body = planet_export[1][0].read_bytes()
    assert _post_image(client, body, threshold=0).json()["tags"] == predictor.classes
    assert _post_image(client, body, threshold=1).json()["tags"] == []
    probs = _post_image(client, body).json()["probs"]
    mid = sorted(probs.values())[len(probs) // 2]
    answer = _post_image(client, body, threshold=mid).json()
    assert answer["threshold"] == mid
    assert answer["tags"] == [c for c, p in probs.items() if p > mid]


# --- CamVid masks and head-pose points ---

def _rle_decode(runs: list, height: int, width: int) -> "torch.Tensor":
    import torch

    flat = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in runs])
    return flat.reshape(height, width)


@pytest.mark.ray
def test_camvid_mask_as_png_json_rle_and_list(client, spatial_exports):
    import numpy as np
    import torch

    from raylessons.inference import Predictor

    export, images = spatial_exports["camvid"]
    local = Predictor.from_export(export)
    img = Image.open(images[0]).convert("RGB").resize((70, 50))  # not the export's size: answers come back at 50x70
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    mask, present, _ = local.predict(img)
    assert mask.shape == (50, 70)

    r = client.post("/camvid", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    png = Image.open(io.BytesIO(r.content))
    assert png.mode == "L" and png.size == (70, 50)
    assert torch.equal(torch.from_numpy(np.asarray(png).astype(np.int64)), mask)
    assert r.headers["x-classes-present"].split(",") == present and r.headers["x-mask-size"] == "50x70"

    r = client.post("/camvid", content=buf.getvalue(), headers={"content-type": "image/png"},
                    params={"format": "json"})
    answer = r.json()
    assert (answer["height"], answer["width"], answer["encoding"]) == (50, 70, "rle")
    assert answer["classes_present"] == present and len(answer["codes"]) == 32
    assert torch.equal(_rle_decode(answer["mask"], 50, 70), mask)
    listed = client.post("/camvid", content=buf.getvalue(), headers={"content-type": "image/png"},
                         params={"format": "json", "encoding": "list"}).json()
    assert torch.equal(torch.tensor(listed["mask"]), mask)


@pytest.mark.ray
def test_headpose_answers_in_pixels_of_the_posted_image(client, spatial_exports):
    from raylessons.inference import Predictor

    export, images = spatial_exports["head_pose"]
    local = Predictor.from_export(export)
    for path, size in [(images[0], None), (images[1], (200, 90))]:  # as stored, then resized and squished
        img = Image.open(path).convert("RGB")
        img = img if size is None else img.resize(size)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        r = client.post("/headpose", content=buf.getvalue(), headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        rc, unit, _ = local.predict(img)
        assert r.json() == pytest.approx({"row": rc[0, 0].item(), "col": rc[0, 1].item()}, abs=1e-3)
        h, w = img.height, img.width
        assert rc[0].tolist() == pytest.approx([(unit[0, 0].item() + 1) * h / 2 - 0.5,
                                                (unit[0, 1].item() + 1) * w / 2 - 0.5], abs=1e-4)


@pytest.mark.ray
@pytest.mark.parametrize("path, params, status, error, names", [
    ("/camvid", {"format": "gif"}, 422, "invalid_query", "format"),
    ("/camvid", {"encoding": "zip", "format": "json"}, 422, "invalid_query", "encoding"),
    ("/camvid", {"threshold": "0.5"}, 422, "invalid_query", "threshold"),
    ("/headpose", {"format": "json"}, 422, "invalid_query", "format"),
    ("/headpose", {}, 400, "bad_image", "not a readable image"),
    ("/camvid", {}, 400, "bad_image", "not a readable image"),
])
def test_spatial_routes_reject_bad_requests(client, path, params, status, error, names):
    body = b"not an image" if status == 400 else _png()
    r = client.post(path, content=body, headers={"content-type": "image/png"}, params=params)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and names in r.json()["detail"], r.json()


@pytest.mark.ray
def test_client_talks_to_every_route(server, spatial_exports, sentiment_export, tmp_path):
    from raylessons.client import predict_files
    from raylessons.text_predict import TextPredictor

    review, latin1 = tmp_path / "0_9.txt", tmp_path / "1_2.txt"
    review.write_text("The acting was great but the plot was dull.", encoding="utf-8")
    latin1.write_bytes("A caf\xe9 scene , not good .".encode("latin-1"))  # not UTF-8: replaced, still answered
    local = TextPredictor.from_export(sentiment_export)
    rows = predict_files("sentiment", server, [review, latin1])
    assert [r["label"] for r in rows] == [local.predict(review.read_text())[0],
                                          local.predict("A caf\ufffd scene , not good .")[0]]
    assert all(set(r) == {"file", "label", "probs", "tokens", "truncated"} for r in rows)
    (row,) = predict_files("head_pose", server, spatial_exports["head_pose"][1][:1])
    assert set(row) == {"file", "row", "col"}
    (row,) = predict_files("camvid", server, spatial_exports["camvid"][1][:1])
    assert row["encoding"] == "rle" and sum(n for _, n in row["mask"]) == row["height"] * row["width"]


# --- sentiment ---

@pytest.mark.ray
def test_sentiment_answers_one_text_or_a_list(client, sentiment_export):
    from raylessons.text_predict import TextPredictor

    local = TextPredictor.from_export(sentiment_export)
    text = "The acting was great but the plot was dull."
    r = client.post("/sentiment", json={"text": text})
    assert r.status_code == 200, r.text
    answer = r.json()
    label, _, probs = local.predict(text)
    assert answer["label"] == label and answer["truncated"] is False and 5 < answer["tokens"] <= 20
    assert list(answer["probs"].values()) == pytest.approx(probs.tolist(), abs=1e-5)
    texts = [text, "I hardly liked it.", "Not bad at all! " * 10]
    many = client.post("/sentiment", json={"texts": texts}).json()["predictions"]
    assert [m["label"] for m in many] == [local.predict(t)[0] for t in texts]
    # batched with longer texts it is padded at the start (fastai's pad_first), which moves the LSTM state a little
    assert many[0]["probs"] == pytest.approx(answer["probs"], abs=1e-2)
    assert many[2]["truncated"] is True and many[2]["tokens"] > 20  # cut to the model's max_len (20 here)


@pytest.mark.ray
@pytest.mark.parametrize("kwargs, status, error, names", [
    (dict(json={}), 422, "invalid_body", "exactly one of"),
    (dict(json={"text": ""}), 422, "empty_text", '"text" is empty'),
    (dict(json={"texts": ["fine", "  \n "]}), 422, "empty_text", '"texts"[1] is empty'),
    (dict(json={"texts": []}), 422, "invalid_body", "non-empty list"),
    (dict(json={"text": 3}), 422, "invalid_body", "must be a string"),
    (dict(json={"text": "a", "texts": ["b"]}), 422, "invalid_body", "exactly one of"),
    (dict(json={"text": "a", "lang": "en"}), 422, "invalid_body", "unknown fields ['lang']"),
    (dict(json={"texts": ["a"] * 65}), 422, "invalid_body", "limit of 64"),
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid_body", "not JSON"),
    (dict(content=b"great movie", headers={"content-type": "text/plain"}), 415, "unsupported_media_type",
     "application/json"),
], ids=["no-field", "empty", "blank-in-list", "empty-list", "not-string", "both", "unknown-field", "too-many",
        "malformed", "text-plain"])
def test_sentiment_rejects_bad_bodies(client, kwargs, status, error, names):
    r = client.post("/sentiment", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and names in r.json()["detail"], r.json()


# --- every client mistake is a 4xx JSON answer naming the problem ---

_JPEG_HALF = "truncated"


@pytest.mark.ray
@pytest.mark.parametrize("body, ctype, params, status, error, names", [
    (b"", "image/jpeg", {}, 400, "bad_image", "empty"),
    (bytes(range(256)) * 8, "image/jpeg", {}, 400, "bad_image", "not a readable image"),
    (_JPEG_HALF, "image/jpeg", {}, 400, "bad_image", "truncated"),
    (_png_declaring(30000, 30000), "image/png", {}, 400, "bad_image", "pixels"),  # PIL's own bomb check
    (_png_declaring(8000, 6000), "image/png", {}, 400, "bad_image", "declares 8000x6000 pixels"),  # ours
    (_png_declaring(0, 10), "image/png", {}, 400, "bad_image", "not a readable image"),
    (_png(), "text/plain", {}, 415, "unsupported_media_type", "text/plain"),
    (_png(), None, {}, 415, "unsupported_media_type", "no Content-Type"),
    (b"\0" * (MAX_BODY + 1), "image/jpeg", {}, 413, "payload_too_large", str(MAX_BODY)),
    (_png(), "image/png", {"threshold": "1.5"}, 422, "invalid_query", "threshold"),
    (_png(), "image/png", {"threshold": "-0.1"}, 422, "invalid_query", "threshold"),
    (_png(), "image/png", {"threshold": "abc"}, 422, "invalid_query", "threshold"),
    (_png(), "image/png", {"threshold": "nan"}, 422, "invalid_query", "threshold"),
    (_png(), "multipart/form-data", {}, 400, "bad_multipart", "boundary"),
], ids=["empty", "random", "truncated-jpeg", "30000x30000-png", "8000x6000-png", "zero-width-png", "text-plain", "no-type",
        "over-limit", "threshold-1.5", "threshold-neg", "threshold-abc", "threshold-nan", "multipart-no-boundary"])
def test_bad_requests(client, planet_export, body, ctype, params, status, error, names):
    if body is _JPEG_HALF:
        jpeg = planet_export[1][0].read_bytes()
        body = jpeg[: len(jpeg) // 2]
    headers = {} if ctype is None else {"content-type": ctype}
    r = client.post("/planet", content=body, headers=headers, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    answer = r.json()
    assert answer["error"] == error and names in answer["detail"], answer


@pytest.mark.ray
def test_body_over_limit_without_content_length(client):
    def chunks():  # a generator body is sent chunked: the limit must be counted while reading
        for _ in range(MAX_BODY // 10_000 + 2):
            yield b"\0" * 10_000

    r = client.post("/planet", content=chunks(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


@pytest.mark.ray
def test_multipart_without_file(client):
    r = client.post("/planet", files={"note": (None, "just text")})
    assert r.status_code == 400 and "no file" in r.json()["detail"]


@pytest.mark.ray
@pytest.mark.parametrize("method, path, status, error", [
    ("GET", "/nope", 404, "not_found"), ("POST", "/nope/deeper", 404, "not_found"),
    ("GET", "/planet", 405, "method_not_allowed")])
def test_unknown_routes(client, method, path, status, error):
    r = client.request(method, path)
    assert r.status_code == status and r.json()["error"] == error and path in r.json()["detail"]


# --- health and metadata ---

@pytest.mark.ray
def test_healthz_and_models(client, predictor):
    health = client.get("/healthz")  # every model deployment was asked
    assert health.status_code == 200 and health.json() == {
        "status": "ok", "models": {"camvid": "ok", "head_pose": "ok", "planet": "ok", "sentiment": "ok"}}
    cv, hp, info, st = client.get("/models").json()["models"]
    assert (st["task"], st["kind"], st["classes"]) == ("sentiment", "category", ["neg", "pos"])
    assert (cv["task"], cv["kind"], cv["size"], len(cv["classes"])) == ("camvid", "segmentation", [32, 48], 32)
    assert (hp["task"], hp["kind"], hp["size"]) == ("head_pose", "points", [24, 32])
    meta = predictor.data.meta
    assert info["task"] == "planet" and info["kind"] == "multi_category" and info["arch"] == "resnet18"
    assert info["classes"] == predictor.classes and info["size"] == 32 and info["threshold"] == 0.2
    assert info["exported_at"] == meta["exported_at"] and info["metrics"] == meta["metrics"]
    assert info["export"] == str(predictor.data.path.resolve()) and "swap_error" not in info


@pytest.mark.ray
def test_concurrent_requests_share_forwards(server, planet_export):
    """24 requests at once, the first allowed 1 s to find company: the replica answers them all in a few
    forwards (GET /models counts both), each answer being the one a lone request gets."""
    from raylessons.serving import local

    image = planet_export[1][0].read_bytes()

    def batching() -> dict:
        models = httpx.get(f"{server}/models", timeout=60, trust_env=False).json()["models"]
        return {m["task"]: m for m in models}["planet"]["batching"]

    async def burst() -> list:
        async with httpx.AsyncClient(base_url=server, timeout=120, trust_env=False) as c:
            return await asyncio.gather(*(c.post("/planet", content=image, headers={"content-type": "image/jpeg"})
                                          for _ in range(24)))

    alone = httpx.post(f"{server}/planet", content=image, headers={"content-type": "image/jpeg"}, timeout=60,
                       trust_env=False).json()
    assert (batching()["max_batch_size"], batching()["batch_wait_timeout_s"]) == (16, 0.05)  # the module's
    local.configure("planet", batch_wait_timeout_s=1.0)  # live, through user_config
    try:
        before = batching()
        assert before["batch_wait_timeout_s"] == 1.0
        answers = asyncio.run(burst())
        after = batching()
    finally:
        local.configure("planet", batch_wait_timeout_s=0.05)
    assert [r.status_code for r in answers] == [200] * 24
    for r in answers:
        assert r.json()["tags"] == alone["tags"]
        assert r.json()["probs"] == pytest.approx(alone["probs"], abs=1e-5)
    assert after["requests"] - before["requests"] == 24
    forwards = after["batches"] - before["batches"]
    assert 2 <= forwards <= 8, after  # at most 16 a batch, and 3 requests a batch at least on average


@pytest.mark.ray
def test_openapi_docs_list_every_route(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/planet", "/camvid", "/headpose", "/sentiment", "/models", "/healthz"} <= set(paths)
    assert "threshold" in paths["/planet"]["post"]["description"]


# --- the client ---

@pytest.mark.ray
def test_predict_files(server, planet_export, predictor, tmp_path, capsys):
    from raylessons.client import main, predict_files

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    paths = [*planet_export[1][:2], bad, tmp_path / "missing.jpg"]
    rows = predict_files("planet", server, paths)
    assert [r["file"] for r in rows] == [str(p) for p in paths]
    for path, row in zip(paths[:2], rows):
        assert row["tags"] == predictor.predict(path)[0]
    assert rows[2]["status"] == 400 and rows[2]["error"] == "bad_image"
    assert rows[3]["error"] == "unreadable_file"
    assert main(["--url", server, "--threshold", "0", *map(str, paths[:2])]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["tags"] for row in lines] == [predictor.classes] * 2


def test_client_unreachable_server(tmp_path, capsys):
    from raylessons.client import ServerUnreachable, main, predict_files

    img = tmp_path / "a.png"
    img.write_bytes(_png())
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ServerUnreachable, match="cannot reach"):
        predict_files("planet", url, [img], timeout=5)
    assert main(["--url", url, str(img)]) == 2
    assert "cannot reach" in capsys.readouterr().err


# --- the builder (no Ray session needed: binding only reads meta.json) ---

def test_build_app_validates_exports(planet_export, tmp_path):
    from raylessons.data.imageio import MAX_PIXELS
    from raylessons.serving.app import MAX_PIXELS as APP_MAX_PIXELS
    from raylessons.serving.app import build_app, resolve_export

    assert APP_MAX_PIXELS is MAX_PIXELS  # one constant, from the torch-free raylessons.limits

    export = planet_export[0]
    assert build_app({"exports": json.dumps({"planet": str(export)})}) is not None  # the `serve run` form
    with pytest.raises(ConfigError, match="unknown task 'pets'; known tasks: .*planet"):
        build_app({"exports": {"pets": str(export)}})
    with pytest.raises(ConfigError, match="no exports"):
        build_app({"exports": {}})
    with pytest.raises(ConfigError, match="JSON object"):
        build_app({"exports": "planet=/x"})
    with pytest.raises(DataError, match="meta.json missing"):
        build_app({"exports": {"planet": str(tmp_path)}})
    points = tmp_path / "points"
    points.mkdir()
    (points / "meta.json").write_text(json.dumps({"model": {}, "label_kind": "points"}))
    with pytest.raises(ConfigError, match="holds a 'points' model; task 'planet' needs 'multi_category'"):
        build_app({"exports": {"planet": str(points)}})
    image_category = tmp_path / "pets"
    image_category.mkdir()
    (image_category / "meta.json").write_text(json.dumps({"model": {"kind": "cnn"}, "label_kind": "category"}))
    with pytest.raises(ConfigError, match=r"\(cnn\); task 'sentiment' needs 'category' from \['awd_lstm_clas'\]"):
        build_app({"exports": {"sentiment": str(image_category)}})
    # export_root: relative paths start there; nothing may escape it
    root = export.parent
    assert build_app({"exports": {"planet": export.name}, "export_root": str(root)}) is not None
    with pytest.raises(ConfigError, match="outside export_root"):
        build_app({"exports": {"planet": f"../{root.name}/{export.name}"}, "export_root": str(export)})
    with pytest.raises(ConfigError, match="outside export_root"):
        resolve_export("planet", "/etc", str(root))


def test_serve_config_file_matches_the_app(planet_export, spatial_exports, sentiment_export):
    """serve/config.yaml is a valid Serve config whose args build the app and whose deployments exist in it."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from pydantic import ValidationError

    from raylessons.serving.app import ROUTES, AppArgs, ModelConfig, build_app

    config = ServeDeploySchema.model_validate(yaml.safe_load((Path(__file__).parents[1] / "serve/config.yaml")
                                                              .read_text()))
    assert config.http_options.host == "127.0.0.1"
    (app,) = config.applications
    assert app.import_path == "serve.app:build_app"
    args = AppArgs.model_validate(app.args)
    assert set(args.exports) == set(ROUTES)  # every task has an export in the file
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {"Ingress", *ROUTES}
    for task in ROUTES:  # each model's user_config (what `serve deploy` applies live) is one replicas accept
        cfg = ModelConfig.model_validate(deployments[task].user_config)
        assert cfg.export is None  # unset: the export in args; set it to swap the model live
        assert deployments[task].max_ongoing_requests >= cfg.max_batch_size
    assert sum(deployments[t].ray_actor_options.num_cpus for t in ROUTES) <= 2  # fits this 2-core machine
    # the file's args with this test's exports build an application holding exactly those deployments; each
    # model's code-level user_config names its export
    exports = {"planet": str(planet_export[0]), "sentiment": str(sentiment_export),
               **{t: str(e[0]) for t, e in spatial_exports.items()}}
    built = build_app(args.model_copy(update={"exports": exports}))
    models = {a._bound_deployment.name: a._bound_deployment for a in built._bound_deployment.init_args[0].values()}
    assert {built._bound_deployment.name, *models} == set(deployments)
    for task, deployment in models.items():
        assert deployment._deployment_config.user_config["export"] == str(Path(exports[task]).resolve())
    with pytest.raises(ValidationError, match="extra"):  # a misspelt key fails instead of being ignored
        ModelConfig.model_validate({"max_batch_sise": 4})


# --- the HTTP helpers, without Ray ---

def test_content_type_and_length_checks():
    assert http.check_content_type({"content-type": "Image/JPEG; q=1"}) == "image/jpeg"
    assert http.check_content_type({"content-type": "multipart/form-data; boundary=x"}) == http.MULTIPART
    with pytest.raises(http.ApiError) as e:
        http.check_content_type({"content-type": "text/plain"})
    assert e.value.status == 415 and "text/plain" in e.value.detail
    assert http.check_content_length({}, 10) is None
    assert http.check_content_length({"content-length": "10"}, 10) == 10
    for raw, status in (("11", 413), ("-1", 400), ("ten", 400)):
        with pytest.raises(http.ApiError) as e:
            http.check_content_length({"content-length": raw}, 10)
        assert e.value.status == status


def test_read_limited_counts_while_reading():
    async def chunks(n):
        for _ in range(n):
            yield b"abcd"

    assert asyncio.run(http.read_limited(chunks(3), 12)) == b"abcd" * 3
    with pytest.raises(http.ApiError, match="413 payload_too_large"):
        asyncio.run(http.read_limited(chunks(4), 12))


def test_first_file_of_multipart():
    req = httpx.Request("POST", "http://x/", files={"a": (None, "text"), "img": ("i.png", b"PNGDATA"),
                                                     "b": ("j.png", b"SECOND")})
    body, ctype = req.read(), req.headers["content-type"]
    assert asyncio.run(http.first_file(body, ctype)) == b"PNGDATA"
    only_text = httpx.Request("POST", "http://x/", files={"a": (None, "text")})
    with pytest.raises(http.ApiError, match="no file part"):
        asyncio.run(http.first_file(only_text.read(), only_text.headers["content-type"]))
    with pytest.raises(http.ApiError, match="malformed"):
        asyncio.run(http.first_file(b"junk", "multipart/form-data"))


def test_api_error_survives_pickling():
    err = pickle.loads(pickle.dumps(http.ApiError(400, "bad_image", "broken")))  # replicas return these
    assert (err.status, err.error, err.detail) == (400, "bad_image", "broken")


def test_error_handlers_without_ray():
    app = FastAPI()
    http.install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request, threshold: float | None = Query(None, ge=0, le=1)):
        return {"n": len(await http.read_image_body(request, 100)), "threshold": threshold}

    cases = [(dict(content=b"x" * 100, headers={"content-type": "image/png"}), 200, None),
             (dict(content=b"x" * 101, headers={"content-type": "image/png"}), 413, "payload_too_large"),
             (dict(content=b"x", headers={"content-type": "text/csv"}), 415, "unsupported_media_type"),
             (dict(content=b"", headers={"content-type": "image/png"}), 400, "bad_image"),
             (dict(content=b"x", headers={"content-type": "image/png"}, params={"threshold": 2}), 422,
              "invalid_query")]

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            for kwargs, status, error in cases:
                r = await c.post("/echo", **kwargs)
                assert r.status_code == status, r.text
                assert r.json().get("error") == error and (error is None or r.json()["detail"])
            assert (await c.get("/missing")).json() == {"error": "not_found", "detail": "no route GET /missing"}
            r = await c.get("/echo")
            assert r.status_code == 405 and "use POST" in r.json()["detail"]

    asyncio.run(run())


# --- live model swap, request timeout (these start or change applications: kept last) ---

@pytest.fixture(scope="module")
def other_planet_export(planet_export, tmp_path_factory) -> Path:
    """A second planet export: same data and classes, other (seed 1) weights, so its answers differ."""
    import torch

    from raylessons.tasks.planet import Config, build_data, build_learner

    root = planet_export[1][0].parent.parent
    torch.manual_seed(1)
    cfg = Config(data=str(root), size=32, bs=8, arch="resnet18")
    return build_learner(build_data(cfg), cfg).export(tmp_path_factory.mktemp("serve-swap") / "export")


@pytest.mark.ray
def test_swap_under_a_trickle_drops_nothing(server, planet_export, other_planet_export, predictor):
    import threading
    import time

    from raylessons.inference import Predictor
    from raylessons.serving import swap

    image = planet_export[1][0]
    old = predictor.predict(image)[2].tolist()
    new = Predictor.from_export(other_planet_export).predict(image)[2].tolist()
    assert max(abs(a - b) for a, b in zip(old, new)) > 1e-3  # the two models are told apart by their answers
    answers, stop = [], threading.Event()

    def trickle():  # one request every 20 ms until stopped: (sent at, status, probabilities)
        with httpx.Client(base_url=server, timeout=60, trust_env=False) as c:
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
    with httpx.Client(base_url=server, timeout=60, trust_env=False) as c:
        info = {m["task"]: m for m in c.get("/models").json()["models"]}["planet"]
        assert info["export"] == str(other_planet_export.resolve())
        assert info["exported_at"] == json.loads((other_planet_export / "meta.json").read_text())["exported_at"]
        camvid = {m["task"]: m for m in c.get("/models").json()["models"]}["camvid"]["export"]
        with pytest.raises(ConfigError, match="holds a 'segmentation' model"):  # a bad swap fails before Serve
            swap({"planet": camvid})
        run_swap(planet_export[0])  # and back, for the other tests of the module
        assert [a for a in answers if a[1] != 200] == [] and model_of(answers[-1][2]) == "old"
        assert {m["task"]: m for m in c.get("/models").json()["models"]}["planet"]["export"] == str(
            planet_export[0].resolve())


@pytest.mark.ray
def test_refused_swap_keeps_the_old_model(planet_export, other_planet_export, spatial_exports, ray_session):
    """What a `serve deploy` with a bad `user_config.export` does to a replica: its methods, called in a Ray
    worker as Serve would."""
    import shutil

    import ray

    def scenario(export: str, root: str, image: bytes) -> list:  # local: shipped by value to the worker
        import asyncio

        from raylessons.data.imageio import decode_image_bytes
        from raylessons.serving.app import ImageModel, _forward_groups

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


def _trickled_request(url: str, path: str, body: bytes, declared: int, wait_s: float) -> tuple[int, dict, float]:
    """POST the first bytes of `body` declaring `declared` bytes, then send nothing more: the status, JSON body
    and seconds until the server answered."""
    import time
    from urllib.parse import urlsplit

    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=wait_s) as sock:
        t0 = time.monotonic()
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: image/jpeg\r\n"
                     f"Content-Length: {declared}\r\n\r\n".encode() + body)
        raw = b""
        while b"\r\n\r\n" not in raw or len(raw.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"(?i)content-length: *(\d+)", raw).group(1)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        head, _, payload = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(payload), time.monotonic() - t0


@pytest.mark.ray
def test_request_timeout_answers_504_and_a_trickled_body_408_json(server, planet_export):
    from ray import serve

    from raylessons.serving.app import build_app

    # a lone request waits batch_wait_timeout_s (2 s) for company: longer than the 0.3 s allowed
    app = build_app({"exports": {"planet": str(planet_export[0])}, "request_timeout_s": 0.3,
                     "batch_wait_timeout_s": 2.0, "replica_cpus": 0.01, "body_timeout_s": 1.5})
    serve.run(app, name="slow", route_prefix="/slow")
    try:
        image = planet_export[1][0].read_bytes()
        with httpx.Client(base_url=server, timeout=60, trust_env=False) as c:
            r = c.post("/slow/planet", content=image, headers={"content-type": "image/jpeg"})
            assert r.status_code == 504, r.text
            assert r.json()["error"] == "timeout" and "request_timeout_s=0.3" in r.json()["detail"]
            # a client that declares the whole image but sends only its first 100 bytes gets 408 after 1.5 s
            status, body, waited = _trickled_request(server, "/slow/planet", image[:100], len(image), wait_s=30)
            assert status == 408, body
            assert body["error"] == "body_timeout" and "body_timeout_s=1.5" in body["detail"]
            assert 1.5 <= waited < 15
            assert c.get("/slow/healthz").status_code == 200  # the app goes on answering
    finally:
        serve.delete("slow")


# --- fuzzing: 1,000+ malformed requests across every route ---

def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 header claims width x height."""
    data = bytearray(_png(40, 30, "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _bad_requests():
    """A hypothesis strategy of (path, content type, body, query): every one malformed by construction."""
    from hypothesis import strategies as st

    image_paths = st.sampled_from(["/planet", "/camvid", "/headpose"])
    image_types = st.sampled_from(["image/jpeg", "image/png", "application/octet-stream"])
    valid = [_png(30, 20), _png(40, 30, "JPEG")]
    random_bytes = st.tuples(image_paths, image_types, st.binary(max_size=4096), st.just({}))
    truncated = st.tuples(image_paths, image_types,
                          st.builds(lambda img, frac: img[: int(len(img) * frac)], st.sampled_from(valid),
                                    st.floats(0.0, 0.7)), st.just({}))  # cut inside the pixel data
    huge = st.tuples(image_paths, image_types,
                     st.builds(lambda f, w, h: f(w, h), st.sampled_from([_png_declaring, _jpeg_declaring]),
                               st.integers(7000, 65535), st.integers(7000, 65535)), st.just({}))
    wrong_type = st.tuples(st.sampled_from(["/planet", "/camvid", "/headpose", "/sentiment"]),
                           st.sampled_from(["text/plain", "application/xml", "image/gif", "video/mp4", ""]),
                           st.sampled_from(valid + [b'{"text": "fine"}', b""]), st.just({}))
    bad_query = st.tuples(st.just("/planet"), st.just("image/png"), st.just(valid[0]),
                          st.dictionaries(st.sampled_from(["threshold", "format", "x"]),
                                          st.sampled_from(["-1", "2", "nan", "abc", "", "1e9"]), min_size=1))
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                               lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5),
                                                                                          inner, max_size=4),
                               max_leaves=12)
    bad_json = st.one_of(
        st.binary(max_size=2048),                                                      # not JSON, not UTF-8
        st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1000, 60000)),             # deep nesting
        st.builds(lambda n: (b'{"text": "' + b"a" * n + b'"}'), st.integers(MAX_BODY, 2 * MAX_BODY)),  # too big
        st.builds(lambda n: b"1" * n, st.integers(4400, 9000)),                        # a giant integer
        st.builds(lambda v: json.dumps({"text": v}).encode(),
                  json_values.filter(lambda v: not isinstance(v, str) or not v.strip())),  # not a text / empty
        st.builds(lambda v: json.dumps({"texts": v}).encode(),
                  json_values.filter(lambda v: not (isinstance(v, list) and v and all(
                      isinstance(t, str) and t.strip() for t in v)))),
        st.builds(lambda v: json.dumps(v).encode(), json_values),  # anything but one of text/texts
    ).filter(lambda b: not _is_good_text_body(b))
    bad_text = st.tuples(st.just("/sentiment"), st.just("application/json"), bad_json, st.just({}))
    return st.one_of(random_bytes, truncated, huge, wrong_type, bad_query, bad_text)


def _is_good_text_body(raw: bytes) -> bool:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    if not isinstance(body, dict) or set(body) not in ({"text"}, {"texts"}):
        return False
    texts = [body["text"]] if "text" in body else body["texts"]
    return isinstance(texts, list) and 0 < len(texts) <= 64 and all(isinstance(t, str) and t.strip() for t in texts)


def _replica_rss(task: str = "") -> dict[int, int]:
    """Resident memory (kB) of the live replica processes of the module's app (of `task`'s deployment when
    given), by pid: Ray titles them `ray::ServeReplica:<app>:<deployment>`."""
    import os

    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode(errors="replace")
            if title.startswith(f"ray::ServeReplica:raylessons:{task}"):
                status = open(f"/proc/{pid}/status").read()
                out[int(pid)] = int(status.split("VmRSS:")[1].split()[0])  # no VmRSS: a zombie, skipped
        except (OSError, IndexError):
            continue
    return out


@pytest.mark.ray
def test_fuzz_malformed_requests_get_json_4xx(server):
    import threading

    from hypothesis import HealthCheck, given, settings

    idle = _replica_rss()
    assert len(idle) == 5  # the ingress and four models
    peak, stop = dict(idle), threading.Event()

    def sample():  # peak memory of every replica while the fuzzing runs
        while not stop.wait(0.05):
            for pid, kb in _replica_rss().items():
                peak[pid] = max(peak.get(pid, 0), kb)

    statuses: list[int] = []
    client = httpx.Client(base_url=server, timeout=60, trust_env=False)

    @settings(max_examples=1000, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_bad_requests())
    def send(request):
        path, ctype, body, params = request
        headers = {"content-type": ctype} if ctype else {}
        r = client.post(path, content=body, headers=headers, params=params)
        statuses.append(r.status_code)
        assert 400 <= r.status_code < 500, (path, ctype, body[:80], params, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/json") and "error" in r.json(), r.text[:300]

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        send()
    finally:
        stop.set(), sampler.join(), client.close()
    assert len(statuses) >= 1000
    assert _replica_rss().keys() == idle.keys()  # no replica restarted
    grown = {pid: peak[pid] / idle[pid] for pid in idle}
    print(f"{len(statuses)} malformed requests: {sorted(set(statuses))}; peak/idle replica memory "
          f"{ {pid: round(g, 3) for pid, g in grown.items()} }")
    assert max(grown.values()) <= 1.10


# --- a model replica killed under load ---

def _retries_logged() -> int:
    """How many requests the ingress sent again because their replica died (from its log)."""
    import glob

    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    return sum(open(f, errors="replace").read().count("replica died with a request in flight")
               for f in glob.glob(f"{session}/logs/serve/replica_raylessons_Ingress_*.log"))


@pytest.mark.ray
def test_replica_killed_under_load_costs_no_request(server, planet_export):
    """Two planet replicas, four steady users, one replica SIGKILLed: no client sees it (the ingress resends
    the requests that were in flight on it)."""
    import os
    import signal
    import threading
    import time

    from raylessons.serving import local

    image = planet_export[1][0].read_bytes()
    local.scale("planet", num_replicas=2)
    try:
        pids = sorted(_replica_rss("planet"))
        assert len(pids) == 2
        answers, stop = [], threading.Event()

        def user():  # request after request until stopped
            with httpx.Client(base_url=server, timeout=60, trust_env=False) as c:
                while not stop.is_set():
                    t = time.monotonic()
                    r = c.post("/planet", content=image, headers={"content-type": "image/jpeg"})
                    answers.append((t, r.status_code, r.text[:200]))

        users = [threading.Thread(target=user) for _ in range(4)]
        for u in users:
            u.start()
        time.sleep(2)
        killed_at, retried = time.monotonic(), _retries_logged()
        os.kill(pids[0], signal.SIGKILL)  # a crash, not a graceful stop: requests in flight die with it
        time.sleep(4)
        stop.set()
        for u in users:
            u.join()
        assert [a for a in answers if a[1] != 200] == []  # no client saw the replica die
        assert sum(t < killed_at for t, _, _ in answers) >= 10 and sum(t > killed_at + 1 for t, _, _ in answers) >= 10
        assert pids[1] in _replica_rss("planet")
        print(f"{len(answers)} requests, {_retries_logged() - retried} resent after the kill")
        with httpx.Client(base_url=server, timeout=30, trust_env=False) as c:
            assert c.get("/healthz").json()["status"] == "ok"
    finally:
        local.scale("planet", num_replicas=1)


@pytest.mark.ray
def test_healthz_reports_a_dead_model_until_serve_replaces_it(server, sentiment_export):
    """The only sentiment replica SIGKILLed: /healthz answers 503 naming it (the others ok) while Serve starts a
    new one, then 200 again; the text route answers again afterwards."""
    import os
    import signal
    import time

    with httpx.Client(base_url=server, timeout=60, trust_env=False) as c:
        deadline = time.monotonic() + 120  # earlier tests may leave a replica starting or stopping: begin healthy
        while (r := c.get("/healthz")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)
        assert r.status_code == 200, r.text
        (pid,) = _replica_rss("sentiment")
        os.kill(pid, signal.SIGKILL)
        # While Serve replaces the replica, every answer is 503 naming sentiment. The new replica's start-up
        # loads both cores, so another model may also miss a check's deadline now and then (the check then says
        # so, truthfully); at least one answer must show the other models ok.
        seen, deadline = [], time.monotonic() + 120
        while (r := c.get("/healthz")).status_code != 200 and time.monotonic() < deadline:
            body = r.json()
            assert body["status"] == "degraded" and body["models"]["sentiment"].startswith("unavailable"), body
            seen.append(body)
            time.sleep(0.5)
        assert seen, "the first /healthz after the kill answered 200"
        others_ok = [all(state == "ok" for task, state in b["models"].items() if task != "sentiment") for b in seen]
        assert any(others_ok), seen
        assert r.json() == {"status": "ok", "models": {t: "ok" for t in body["models"]}}
        assert pid not in _replica_rss("sentiment")
        assert c.post("/sentiment", json={"text": "A fine film."}).status_code == 200
