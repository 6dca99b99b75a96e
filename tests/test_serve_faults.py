"""Faults the Serve app must ride out: a prediction past its deadline, a client trickling its body, a model
replica SIGKILLed under load or while it is the only one (the shared app over Ray: see conftest.py)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from raylessons.testing.faults import serve_replicas, sigkill

pytestmark = pytest.mark.ray


def _trickled_request(url: str, path: str, body: bytes, declared: int, wait_s: float) -> tuple[int, dict, float]:
    """POST the first bytes of `body` declaring `declared` bytes, then send nothing more: the status, JSON body
    and seconds until the server answered."""
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


def test_request_timeout_answers_504_and_a_trickled_body_408_json(serve_url, planet_export):
    from ray import serve

    from raylessons.serving.app import build_app
    from raylessons.serving.local import proxy_url

    # a lone request waits batch_wait_timeout_s (2 s) for company: longer than the 0.3 s allowed
    app = build_app({"exports": {"planet": str(planet_export[0])}, "request_timeout_s": 0.3,
                     "batch_wait_timeout_s": 2.0, "replica_cpus": 0.01, "body_timeout_s": 1.5})
    serve.run(app, name="slow", route_prefix="/slow")
    # its Ingress answers HTTP itself at the port after the app's (direct ingress), and through Serve's proxy
    direct = f"http://127.0.0.1:{urlsplit(serve_url).port + 1}"
    try:
        image = planet_export[1][0].read_bytes()
        bases = (direct, proxy_url())
        with httpx.Client(timeout=60, trust_env=False) as c, ThreadPoolExecutor(2) as pool:
            # at once: both wait in the same batch window (a request arriving later could join the end of one)
            answers = list(pool.map(lambda base: c.post(f"{base}/slow/planet", content=image,
                                                        headers={"content-type": "image/jpeg"}), bases))
            for base, r in zip(bases, answers):
                assert r.status_code == 504, (base, r.text)
                assert r.json()["error"] == "timeout" and "request_timeout_s=0.3" in r.json()["detail"]
            for base in bases:
                # a client that declares the whole image but sends only its first 100 bytes gets 408 after 1.5 s
                status, body, waited = _trickled_request(base, "/slow/planet", image[:100], len(image), wait_s=30)
                assert status == 408, (base, body)
                assert body["error"] == "body_timeout" and "body_timeout_s=1.5" in body["detail"]
                assert 1.5 <= waited < 15
                assert c.get(f"{base}/slow/healthz").status_code == 200  # the app goes on answering
    finally:
        serve.delete("slow")


def _retries_logged() -> int:
    """How many requests the ingress sent again because their replica died (from its log)."""
    import glob

    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    return sum(open(f, errors="replace").read().count("replica died with a request in flight")
               for f in glob.glob(f"{session}/logs/serve/replica_raylessons_Ingress_*.log"))


def test_replica_killed_under_load_costs_no_request(serve_url, planet_export):
    """Two planet replicas, four steady users, one replica SIGKILLed: no client sees it (the ingress resends
    the requests that were in flight on it).

    Each replica holds its requests for company for up to 0.5 s (`batch_wait_timeout_s`, live through
    user_config), so requests are surely in flight on the killed replica: the tiny test model answers in
    milliseconds otherwise, and a kill then often finds nothing to lose."""
    from raylessons.serving import local

    image = planet_export[1][0].read_bytes()
    with httpx.Client(base_url=serve_url, timeout=30, trust_env=False) as c:
        wait = {m["task"]: m for m in c.get("/models").json()["models"]}["planet"]["batching"]["batch_wait_timeout_s"]
    local.configure("planet", batch_wait_timeout_s=0.5)
    local.scale("planet", num_replicas=2)
    try:
        pids = sorted(serve_replicas("raylessons", "planet"))
        assert len(pids) == 2
        answers, stop = [], threading.Event()

        def user():  # request after request until stopped
            with httpx.Client(base_url=serve_url, timeout=60, trust_env=False) as c:
                while not stop.is_set():
                    t = time.monotonic()
                    r = c.post("/planet", content=image, headers={"content-type": "image/jpeg"})
                    answers.append((t, r.status_code, r.text[:200]))

        users = [threading.Thread(target=user) for _ in range(4)]
        for u in users:
            u.start()
        time.sleep(2)
        killed_at, retried = time.monotonic(), _retries_logged()
        sigkill(pids[0])  # a crash, not a graceful stop: requests in flight die with it
        time.sleep(4)
        stop.set()
        for u in users:
            u.join()
        assert [a for a in answers if a[1] != 200] == []  # no client saw the replica die
        assert sum(t < killed_at for t, _, _ in answers) >= 10 and sum(t > killed_at + 1 for t, _, _ in answers) >= 10
        assert pids[1] in serve_replicas("raylessons", "planet")
        resent = _retries_logged() - retried
        print(f"{len(answers)} requests, {resent} resent after the kill")
        assert resent >= 1  # requests were in flight on the killed replica, and were sent again
        with httpx.Client(base_url=serve_url, timeout=30, trust_env=False) as c:
            assert c.get("/healthz").json()["status"] == "ok"
    finally:
        local.scale("planet", num_replicas=1)
        local.configure("planet", batch_wait_timeout_s=wait)


def test_healthz_reports_a_dead_model_until_serve_replaces_it(serve_url, sentiment_export):
    """The only sentiment replica hung (SIGSTOP), then SIGKILLed: /healthz answers 503 naming it (the others ok)
    while it hangs and while Serve starts a new one, then 200 again; the text route answers again afterwards.

    It hangs first so that a degraded answer is certain: a killed replica's requests wait for its replacement, and
    on an idle machine Serve can have one answering within the check's HEALTH_TIMEOUT_S (the first check then
    truthfully says ok)."""
    with httpx.Client(base_url=serve_url, timeout=60, trust_env=False) as c:
        deadline = time.monotonic() + 120  # earlier tests may leave a replica starting or stopping: begin healthy
        while (r := c.get("/healthz")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)
        assert r.status_code == 200, r.text
        (pid,) = serve_replicas("raylessons", "sentiment")
        os.kill(pid, signal.SIGSTOP)
        try:
            hung = c.get("/healthz")
        finally:
            sigkill(pid)  # a stopped process dies at SIGKILL too
        assert hung.status_code == 503 and hung.json()["models"]["sentiment"] == "unavailable: TimeoutError", \
            hung.text
        # While Serve replaces the replica, every answer is 503 naming sentiment. The new replica's start-up
        # loads both cores, so another model may also miss a check's deadline now and then (the check then says
        # so, truthfully); at least one answer must show the other models ok.
        seen, deadline = [hung.json()], time.monotonic() + 120
        while (r := c.get("/healthz")).status_code != 200 and time.monotonic() < deadline:
            body = r.json()
            assert body["status"] == "degraded" and body["models"]["sentiment"].startswith("unavailable"), body
            seen.append(body)
            time.sleep(0.5)
        body = seen[-1]
        others_ok = [all(state == "ok" for task, state in b["models"].items() if task != "sentiment") for b in seen]
        assert any(others_ok), seen
        assert r.json() == {"status": "ok", "models": {t: "ok" for t in body["models"]}}
        assert pid not in serve_replicas("raylessons", "sentiment")
        assert c.post("/sentiment", json={"text": "A fine film."}).status_code == 200


def test_a_killed_ingress_comes_back_at_the_same_port(serve_url, planet_export):
    """The Ingress answers HTTP itself (direct ingress), at the app's one port: SIGKILLed, Serve starts another
    Ingress replica, which binds that same port again (Serve frees a dead replica's port at once here), and every
    route answers there again; until then a client gets a refused connection, not a wrong answer."""
    from raylessons.testing.faults import listening_sockets

    port = urlsplit(serve_url).port
    (pid,) = serve_replicas("raylessons", "Ingress")
    assert [p for _, lport, p in listening_sockets() if lport == port] == [pid]
    sigkill(pid)
    deadline, r = time.monotonic() + 120, None
    with httpx.Client(base_url=serve_url, timeout=30, trust_env=False) as c:
        while time.monotonic() < deadline:
            try:
                if (r := c.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert r is not None and r.status_code == 200, "the Ingress did not answer again within 120 s"
        (new,) = serve_replicas("raylessons", "Ingress")
        assert new != pid and [p for _, lport, p in listening_sockets() if lport == port] == [new]
        assert c.post("/planet", content=planet_export[1][0].read_bytes(),
                      headers={"content-type": "image/jpeg"}).status_code == 200
