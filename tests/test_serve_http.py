"""The Serve app's request handling without Ray: body and header checks, error answers, query parameters,
answers, and the client against no server."""
from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys

import httpx
import pytest
import torch

# module level: the error-handler test's string annotations resolve here
from fastapi import FastAPI, Query, Request
from serve_fixtures import free_port

from raylessons.serving import http
from raylessons.data.spatial import run_lengths
from raylessons.serving.queries import MaskQuery, NoQuery, ThresholdQuery, parse_query
from raylessons.testing.faults import image_bytes


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


def test_parse_query_names_each_bad_parameter():
    assert parse_query(ThresholdQuery, {"threshold": "0.3"}) == {"threshold": 0.3}
    assert parse_query(MaskQuery, {}) == {"format": "png", "encoding": "rle"}
    with pytest.raises(http.ApiError) as e:
        parse_query(MaskQuery, {"format": "gif", "x": "1"})
    assert e.value.status == 422 and "format" in e.value.detail and "x: " in e.value.detail
    assert "allowed: ['encoding', 'format']" in e.value.detail
    with pytest.raises(http.ApiError, match="allowed: none"):
        parse_query(NoQuery, {"threshold": "0.5"})


def test_run_lengths_are_row_major():
    mask = torch.tensor([[0, 0, 3], [3, 3, 1]])
    assert run_lengths(mask) == [[0, 2], [3, 3], [1, 1]]
    assert run_lengths(torch.zeros(0, 4, dtype=torch.long)) == []


def test_the_app_imports_without_torch():
    """The ingress (and the build task that imports the app) never import torch: the replicas do, lazily."""
    code = "import sys, raylessons.serving.app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_client_unreachable_server(tmp_path, capsys):
    from raylessons.client import ServerUnreachable, main, predict_files

    img = tmp_path / "a.png"
    img.write_bytes(image_bytes())
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachable, match="cannot reach"):
        predict_files("planet", url, [img], timeout=5)
    assert main(["--url", url, str(img)]) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_listening_sockets_names_each_listener_its_address_and_owner():
    """The socket listing the loopback test relies on: every listener, IPv4 and IPv6, with its owner."""
    import os
    import socket

    from raylessons.testing.faults import is_loopback, listening_sockets

    opened = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::1"),
                         (socket.AF_INET6, "::")):
        s = socket.socket(family)
        try:
            s.bind((host, 0))
        except OSError:  # a machine without IPv6
            s.close()
            continue
        s.listen()
        opened.append((s, host))
    try:
        found = {(addr, port): pid for addr, port, pid in listening_sockets()}
        for s, host in opened:
            assert found[(host, s.getsockname()[1])] == os.getpid()
            assert is_loopback(host) == (host in ("127.0.0.1", "::1"))
        assert len(opened) >= 2
        assert is_loopback("::ffff:127.0.0.1") and not is_loopback("::ffff:10.0.0.1")
    finally:
        for s, _ in opened:
            s.close()
