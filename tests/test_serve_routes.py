"""The Serve application over Ray: every route's answers against local prediction, batching, /healthz,
/models, the OpenAPI docs and the client (one shared app: see conftest.py)."""
from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
import torch
from PIL import Image
from serve_fixtures import assert_matches, post_image

pytestmark = pytest.mark.ray


# --- planet round trips ---

def test_raw_body_matches_local_predict(serve_client, planet_export, planet_predictor):
    path = planet_export[1][0]
    r = post_image(serve_client, path.read_bytes())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"tags", "probs", "threshold"}
    assert list(answer["probs"]) == planet_predictor.classes
    assert_matches(answer, planet_predictor.predict(path))


def test_serves_directly_and_through_serves_proxy_alike(serve_url, serve_client, planet_export):
    """The app's URL is the Ingress replica's own HTTP server (direct ingress); Serve's proxy, at another port,
    gives the same answers, one hop longer."""
    from raylessons.serving.local import proxy_url

    assert proxy_url() != serve_url
    body = planet_export[1][0].read_bytes()
    with httpx.Client(base_url=proxy_url(), timeout=60, trust_env=False) as via_proxy:
        for client in (serve_client, via_proxy):
            assert client.get("/healthz").json()["status"] == "ok"
        direct, proxied = (post_image(c, body).json() for c in (serve_client, via_proxy))
        assert direct["tags"] == proxied["tags"] and direct["probs"] == pytest.approx(proxied["probs"], abs=1e-6)
        missing = [c.post("/nowhere", content=b"x") for c in (serve_client, via_proxy)]
        assert [r.status_code for r in missing] == [404, 404] and missing[0].json() == missing[1].json()


def test_png_and_octet_stream(serve_client, planet_predictor):
    img = Image.new("RGB", (50, 40), (120, 90, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    for ctype in ("image/png", "application/octet-stream"):
        r = post_image(serve_client, buf.getvalue(), ctype)
        assert r.status_code == 200, r.text
        assert_matches(r.json(), planet_predictor.predict(img))


def test_multipart_any_field_name(serve_client, planet_export, planet_predictor):
    path = planet_export[1][1]
    r = serve_client.post("/planet", files={"whatever": (path.name, path.read_bytes(), "image/jpeg")},
                          data={"note": "a text field first"})
    assert r.status_code == 200, r.text
    assert_matches(r.json(), planet_predictor.predict(path))


def test_concurrent_requests_are_batched_in_order(serve_url, planet_export, planet_predictor):
    paths = planet_export[1]

    async def send():
        async with httpx.AsyncClient(base_url=serve_url, timeout=60, trust_env=False) as c:
            return await asyncio.gather(*(c.post("/planet", content=p.read_bytes(),
                                                 headers={"content-type": "image/jpeg"}) for p in paths))

    for path, r in zip(paths, asyncio.run(send())):
        assert r.status_code == 200, r.text
        assert_matches(r.json(), planet_predictor.predict(path))


def test_threshold_override(serve_client, planet_export, planet_predictor):
    body = planet_export[1][0].read_bytes()
    assert post_image(serve_client, body, threshold=0).json()["tags"] == planet_predictor.classes
    assert post_image(serve_client, body, threshold=1).json()["tags"] == []
    probs = post_image(serve_client, body).json()["probs"]
    mid = sorted(probs.values())[len(probs) // 2]
    answer = post_image(serve_client, body, threshold=mid).json()
    assert answer["threshold"] == mid
    assert answer["tags"] == [c for c, p in probs.items() if p > mid]


# --- CamVid masks and head-pose points ---

def _rle_decode(runs: list, height: int, width: int) -> torch.Tensor:
    flat = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in runs])
    return flat.reshape(height, width)


def test_camvid_mask_as_png_json_rle_and_list(serve_client, spatial_exports):
    import numpy as np

    from raylessons.inference import Predictor

    export, images = spatial_exports["camvid"]
    local = Predictor.from_export(export)
    img = Image.open(images[0]).convert("RGB").resize((70, 50))  # not the export's size: answers come back at 50x70
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    mask, present, _ = local.predict(img)
    assert mask.shape == (50, 70)

    r = serve_client.post("/camvid", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    png = Image.open(io.BytesIO(r.content))
    assert png.mode == "L" and png.size == (70, 50)
    assert torch.equal(torch.from_numpy(np.asarray(png).astype(np.int64)), mask)
    assert r.headers["x-classes-present"].split(",") == present and r.headers["x-mask-size"] == "50x70"

    r = serve_client.post("/camvid", content=buf.getvalue(), headers={"content-type": "image/png"},
                          params={"format": "json"})
    answer = r.json()
    assert (answer["height"], answer["width"], answer["encoding"]) == (50, 70, "rle")
    assert answer["classes_present"] == present and len(answer["codes"]) == 32
    assert torch.equal(_rle_decode(answer["mask"], 50, 70), mask)
    listed = serve_client.post("/camvid", content=buf.getvalue(), headers={"content-type": "image/png"},
                               params={"format": "json", "encoding": "list"}).json()
    assert torch.equal(torch.tensor(listed["mask"]), mask)


def test_headpose_answers_in_pixels_of_the_posted_image(serve_client, spatial_exports):
    from raylessons.inference import Predictor

    export, images = spatial_exports["head_pose"]
    local = Predictor.from_export(export)
    for path, size in [(images[0], None), (images[1], (200, 90))]:  # as stored, then resized and squished
        img = Image.open(path).convert("RGB")
        img = img if size is None else img.resize(size)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        r = serve_client.post("/headpose", content=buf.getvalue(), headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        rc, unit, _ = local.predict(img)
        assert r.json() == pytest.approx({"row": rc[0, 0].item(), "col": rc[0, 1].item()}, abs=1e-3)
        h, w = img.height, img.width
        assert rc[0].tolist() == pytest.approx([(unit[0, 0].item() + 1) * h / 2 - 0.5,
                                                (unit[0, 1].item() + 1) * w / 2 - 0.5], abs=1e-4)


# --- sentiment ---

def test_sentiment_answers_one_text_or_a_list(serve_client, sentiment_export):
    from raylessons.text_predict import TextPredictor

    local = TextPredictor.from_export(sentiment_export)
    text = "The acting was great but the plot was dull."
    r = serve_client.post("/sentiment", json={"text": text})
    assert r.status_code == 200, r.text
    answer = r.json()
    label, _, probs = local.predict(text)
    assert answer["label"] == label and answer["truncated"] is False and 5 < answer["tokens"] <= 20
    assert list(answer["probs"].values()) == pytest.approx(probs.tolist(), abs=1e-5)
    texts = [text, "I hardly liked it.", "Not bad at all! " * 10]
    many = serve_client.post("/sentiment", json={"texts": texts}).json()["predictions"]
    # a list's texts go into one forward, each padded at the start to the longest (fastai's pad_first): the same
    # answers as that batch's forward here. Padding moves the LSTM's state, so a text's answer alone may differ
    # (this fixture's model is barely trained: its labels can flip near 0.5)
    rows = local.forward([local.prepare(t)[0] for t in texts])
    assert [m["label"] for m in many] == [local.decode(row)[0] for row in rows]
    for m, row in zip(many, rows):
        assert list(m["probs"].values()) == pytest.approx(row.tolist(), abs=1e-5)
    assert many[0]["probs"] == pytest.approx(answer["probs"], abs=1e-2)  # padded, still close to its answer alone
    assert many[2]["truncated"] is True and many[2]["tokens"] > 20  # cut to the model's max_len (20 here)


# --- health and metadata ---

def test_healthz_and_models(serve_client, planet_predictor):
    health = serve_client.get("/healthz")  # every model deployment was asked
    assert health.status_code == 200 and health.json() == {
        "status": "ok", "models": {"camvid": "ok", "head_pose": "ok", "planet": "ok", "sentiment": "ok"}}
    cv, hp, info, st = serve_client.get("/models").json()["models"]
    assert (st["task"], st["kind"], st["classes"]) == ("sentiment", "category", ["neg", "pos"])
    assert (cv["task"], cv["kind"], cv["size"], len(cv["classes"])) == ("camvid", "segmentation", [32, 48], 32)
    assert (hp["task"], hp["kind"], hp["size"]) == ("head_pose", "points", [24, 32])
    meta = planet_predictor.data.meta
    assert info["task"] == "planet" and info["kind"] == "multi_category" and info["arch"] == "resnet18"
    assert info["classes"] == planet_predictor.classes and info["size"] == 32 and info["threshold"] == 0.2
    assert info["exported_at"] == meta["exported_at"] and info["metrics"] == meta["metrics"]
    assert info["export"] == str(planet_predictor.data.path.resolve()) and "swap_error" not in info


def test_concurrent_requests_share_forwards(serve_url, planet_export):
    """24 requests at once, the first allowed 1 s to find company: the replica answers them all in a few
    forwards (GET /models counts both), each answer being the one a lone request gets."""
    from raylessons.serving import local

    image = planet_export[1][0].read_bytes()

    def batching() -> dict:
        models = httpx.get(f"{serve_url}/models", timeout=60, trust_env=False).json()["models"]
        return {m["task"]: m for m in models}["planet"]["batching"]

    async def burst() -> list:
        async with httpx.AsyncClient(base_url=serve_url, timeout=120, trust_env=False) as c:
            return await asyncio.gather(*(c.post("/planet", content=image, headers={"content-type": "image/jpeg"})
                                          for _ in range(24)))

    alone = httpx.post(f"{serve_url}/planet", content=image, headers={"content-type": "image/jpeg"}, timeout=60,
                       trust_env=False).json()
    assert (batching()["max_batch_size"], batching()["batch_wait_timeout_s"]) == (16, 0.05)  # the app's
    # the replica set OpenMP's spin count before torch loaded (so libgomp uses it), and its forward's threads
    assert batching()["openmp_spin_count"] == "30000" and batching()["threads"] >= 1
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
    # the seconds those forwards took: some, and never more than the burst's wall time (they run one at a time)
    assert 0 < after["forward_s"] - before["forward_s"] < max(r.elapsed.total_seconds() for r in answers)


def test_openapi_docs_list_every_route(serve_client):
    r = serve_client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    paths = serve_client.get("/openapi.json").json()["paths"]
    assert {"/planet", "/camvid", "/headpose", "/sentiment", "/models", "/healthz"} <= set(paths)
    assert "threshold" in paths["/planet"]["post"]["description"]


# --- the client ---

def test_client_talks_to_every_route(serve_url, spatial_exports, sentiment_export, tmp_path):
    from raylessons.client import predict_files
    from raylessons.text_predict import TextPredictor

    review, latin1 = tmp_path / "0_9.txt", tmp_path / "1_2.txt"
    review.write_text("The acting was great but the plot was dull.", encoding="utf-8")
    latin1.write_bytes("A caf\xe9 scene , not good .".encode("latin-1"))  # not UTF-8: replaced, still answered
    local = TextPredictor.from_export(sentiment_export)
    rows = predict_files("sentiment", serve_url, [review, latin1])
    assert [r["label"] for r in rows] == [local.predict(review.read_text())[0],
                                          local.predict("A caf\ufffd scene , not good .")[0]]
    assert all(set(r) == {"file", "label", "probs", "tokens", "truncated"} for r in rows)
    (row,) = predict_files("head_pose", serve_url, spatial_exports["head_pose"][1][:1])
    assert set(row) == {"file", "row", "col"}
    (row,) = predict_files("camvid", serve_url, spatial_exports["camvid"][1][:1])
    assert row["encoding"] == "rle" and sum(n for _, n in row["mask"]) == row["height"] * row["width"]


def test_predict_files(serve_url, planet_export, planet_predictor, tmp_path, capsys):
    from raylessons.client import main, predict_files

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    paths = [*planet_export[1][:2], bad, tmp_path / "missing.jpg"]
    rows = predict_files("planet", serve_url, paths)
    assert [r["file"] for r in rows] == [str(p) for p in paths]
    for path, row in zip(paths[:2], rows):
        assert row["tags"] == planet_predictor.predict(path)[0]
    assert rows[2]["status"] == 400 and rows[2]["error"] == "bad_image"
    assert rows[3]["error"] == "unreadable_file"
    assert main(["--url", serve_url, "--threshold", "0", *map(str, paths[:2])]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["tags"] for row in lines] == [planet_predictor.classes] * 2


# --- the network ---

def test_every_socket_the_app_opens_listens_on_loopback_only(serve_url, serve_client):
    """Every socket Serve's processes (controller, proxy, every replica) listen on binds to loopback, except the
    gRPC servers Ray 2.60 itself binds to all interfaces with no setting to change it (token auth guards them):
    each Ray worker's core-worker port (at the port Ray's actor table gives that process) and, in a replica, one
    more, Serve's inter-deployment gRPC server (`[::]:0` in ray/serve/_private/replica.py). Anything else off
    loopback fails: the HTTP ports (the Ingress's own and the proxy's), a second extra port, any 0.0.0.0 bind."""
    from urllib.parse import urlsplit

    from ray._private import state

    from raylessons.serving.local import proxy_url
    from raylessons.testing.faults import is_loopback, listening_sockets

    assert serve_client.get("/healthz").status_code == 200  # every replica up: each has opened what it opens
    actors = {a["Pid"]: a for a in state.actors().values()
              if a["State"] == "ALIVE" and a["ActorClassName"].startswith(("ServeController", "ProxyActor",
                                                                            "ServeReplica"))}
    kinds = {a["ActorClassName"].split(":")[0] for a in actors.values()}
    assert kinds == {"ServeController", "ProxyActor", "ServeReplica"}, kinds
    sockets = listening_sockets()
    mine = [(addr, port, pid) for addr, port, pid in sockets if pid in actors]
    assert {pid for _, _, pid in mine} == set(actors)  # every Serve process was read (its core port, at least)
    http_port, proxy_port = urlsplit(serve_url).port, urlsplit(proxy_url()).port
    # the app's HTTP port is the Ingress replica's own server (direct ingress, no proxy hop); Serve's proxy has
    # another port, loopback as well
    assert [(addr, actors[pid]["ActorClassName"]) for addr, port, pid in mine if port == http_port] == \
        [("127.0.0.1", "ServeReplica:raylessons:Ingress")]
    assert proxy_port != http_port
    assert [(addr, actors[pid]["ActorClassName"]) for addr, port, pid in mine if port == proxy_port] == \
        [("127.0.0.1", "ProxyActor")]
    for pid, actor in actors.items():
        exposed = sorted((addr, port) for addr, port, p in mine if p == pid and not is_loopback(addr))
        ray_grpc = [(addr, port) for addr, port in exposed if addr == "::"]
        core = [(addr, port) for addr, port in ray_grpc if port == actor["Address"]["Port"]]
        allowed = core + ([p for p in ray_grpc if p not in core][:1]
                          if actor["ActorClassName"].startswith("ServeReplica") else [])
        assert core and exposed == sorted(allowed), (actor["ActorClassName"], exposed, actor["Address"])
    others = sorted((addr, port) for addr, port, pid in sockets if pid not in actors and not is_loopback(addr))
    print(f"{len(mine)} listening sockets in {len(actors)} Serve processes; elsewhere on the machine, not "
          f"loopback (Ray's daemons and workers, other users): {others}")
