"""Every client mistake is a 4xx JSON answer naming the problem: bad images, bodies, types, queries and routes,
then 1,000+ malformed requests across every route (the shared app over Ray: see conftest.py)."""
from __future__ import annotations

import json

import httpx
import pytest
from serve_fixtures import MAX_BODY

from raylessons.testing.faults import declaring, image_bytes, serve_replicas

pytestmark = pytest.mark.ray

_JPEG_HALF = "truncated"


@pytest.mark.parametrize("body, ctype, params, status, error, names", [
    (b"", "image/jpeg", {}, 400, "bad_image", "empty"),
    (bytes(range(256)) * 8, "image/jpeg", {}, 400, "bad_image", "not a readable image"),
    (_JPEG_HALF, "image/jpeg", {}, 400, "bad_image", "truncated"),
    (declaring(30000, 30000), "image/png", {}, 400, "bad_image", "pixels"),  # PIL's own bomb check
    (declaring(8000, 6000), "image/png", {}, 400, "bad_image", "declares 8000x6000 pixels"),  # ours
    (declaring(0, 10), "image/png", {}, 400, "bad_image", "not a readable image"),
    (image_bytes(), "text/plain", {}, 415, "unsupported_media_type", "text/plain"),
    (image_bytes(), None, {}, 415, "unsupported_media_type", "no Content-Type"),
    (b"\0" * (MAX_BODY + 1), "image/jpeg", {}, 413, "payload_too_large", str(MAX_BODY)),
    (image_bytes(), "image/png", {"threshold": "1.5"}, 422, "invalid_query", "threshold"),
    (image_bytes(), "image/png", {"threshold": "-0.1"}, 422, "invalid_query", "threshold"),
    (image_bytes(), "image/png", {"threshold": "abc"}, 422, "invalid_query", "threshold"),
    (image_bytes(), "image/png", {"threshold": "nan"}, 422, "invalid_query", "threshold"),
    (image_bytes(), "multipart/form-data", {}, 400, "bad_multipart", "boundary"),
], ids=["empty", "random", "truncated-jpeg", "30000x30000-png", "8000x6000-png", "zero-width-png", "text-plain", "no-type",
        "over-limit", "threshold-1.5", "threshold-neg", "threshold-abc", "threshold-nan", "multipart-no-boundary"])
def test_bad_requests(serve_client, planet_export, body, ctype, params, status, error, names):
    if body is _JPEG_HALF:
        jpeg = planet_export[1][0].read_bytes()
        body = jpeg[: len(jpeg) // 2]
    headers = {} if ctype is None else {"content-type": ctype}
    r = serve_client.post("/planet", content=body, headers=headers, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    answer = r.json()
    assert answer["error"] == error and names in answer["detail"], answer


def test_body_over_limit_without_content_length(serve_client):
    def chunks():  # a generator body is sent chunked: the limit must be counted while reading
        for _ in range(MAX_BODY // 10_000 + 2):
            yield b"\0" * 10_000

    r = serve_client.post("/planet", content=chunks(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


def test_multipart_without_file(serve_client):
    r = serve_client.post("/planet", files={"note": (None, "just text")})
    assert r.status_code == 400 and "no file" in r.json()["detail"]


@pytest.mark.parametrize("method, path, status, error", [
    ("GET", "/nope", 404, "not_found"), ("POST", "/nope/deeper", 404, "not_found"),
    ("GET", "/planet", 405, "method_not_allowed")])
def test_unknown_routes(serve_client, method, path, status, error):
    r = serve_client.request(method, path)
    assert r.status_code == status and r.json()["error"] == error and path in r.json()["detail"]


@pytest.mark.parametrize("path, params, status, error, names", [
    ("/camvid", {"format": "gif"}, 422, "invalid_query", "format"),
    ("/camvid", {"encoding": "zip", "format": "json"}, 422, "invalid_query", "encoding"),
    ("/camvid", {"threshold": "0.5"}, 422, "invalid_query", "threshold"),
    ("/headpose", {"format": "json"}, 422, "invalid_query", "format"),
    ("/headpose", {}, 400, "bad_image", "not a readable image"),
    ("/camvid", {}, 400, "bad_image", "not a readable image"),
])
def test_spatial_routes_reject_bad_requests(serve_client, path, params, status, error, names):
    body = b"not an image" if status == 400 else image_bytes()
    r = serve_client.post(path, content=body, headers={"content-type": "image/png"}, params=params)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and names in r.json()["detail"], r.json()


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
def test_sentiment_rejects_bad_bodies(serve_client, kwargs, status, error, names):
    r = serve_client.post("/sentiment", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and names in r.json()["detail"], r.json()


# --- fuzzing: 1,000+ malformed requests across every route ---

def _bad_requests():
    """A hypothesis strategy of (path, content type, body, query): every one malformed by construction."""
    from hypothesis import strategies as st

    image_paths = st.sampled_from(["/planet", "/camvid", "/headpose"])
    image_types = st.sampled_from(["image/jpeg", "image/png", "application/octet-stream"])
    valid = [image_bytes(30, 20), image_bytes(40, 30, "JPEG")]
    random_bytes = st.tuples(image_paths, image_types, st.binary(max_size=4096), st.just({}))
    truncated = st.tuples(image_paths, image_types,
                          st.builds(lambda img, frac: img[: int(len(img) * frac)], st.sampled_from(valid),
                                    st.floats(0.0, 0.7)), st.just({}))  # cut inside the pixel data
    huge = st.tuples(image_paths, image_types,
                     st.builds(lambda fmt, w, h: declaring(w, h, fmt), st.sampled_from(["PNG", "JPEG"]),
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


def test_fuzz_malformed_requests_get_json_4xx(serve_url):
    import threading

    from hypothesis import HealthCheck, given, settings

    idle = serve_replicas("raylessons")
    assert len(idle) == 5  # the ingress and four models
    peak, stop = dict(idle), threading.Event()

    def sample():  # peak memory of every replica while the fuzzing runs
        while not stop.wait(0.05):
            for pid, kb in serve_replicas("raylessons").items():
                peak[pid] = max(peak.get(pid, 0), kb)

    statuses: list[int] = []
    client = httpx.Client(base_url=serve_url, timeout=60, trust_env=False)

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
    assert serve_replicas("raylessons").keys() == idle.keys()  # no replica restarted
    grown = {pid: peak[pid] / idle[pid] for pid in idle}
    print(f"{len(statuses)} malformed requests: {sorted(set(statuses))}; peak/idle replica memory "
          f"{ {pid: round(g, 3) for pid, g in grown.items()} }")
    assert max(grown.values()) <= 1.10
