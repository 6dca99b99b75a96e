"""Start and stop the Serve application in-process (demo, tests); `serve run` is the production path."""
from __future__ import annotations

import math
import time

import httpx

__all__ = ["APP_NAME", "start", "shutdown", "serve_forever"]

APP_NAME = "raylessons"

_owns_ray = False  # shutdown() stops Ray only if start() started it


def start(exports: dict[str, str], host: str = "127.0.0.1", port: int = 8000, timeout_s: float = 180,
          **options) -> str:
    """Serve `exports` (task -> export dir) at http://host:port and wait until /healthz answers; the base URL."""
    global _owns_ray
    import ray
    from ray import serve

    from .app import build_app

    build_app({"exports": exports, **options})  # bad exports fail here, before Ray starts
    if not ray.is_initialized():
        # address="local": never attach to a stale cluster file left by an earlier `ray start`
        ray.init(address="local", include_dashboard=False)
        _owns_ray = True
    if "replica_cpus" not in options:
        # one replica per model must fit on this machine (3 models on 2 cores: 2/3 CPU each), or Serve waits forever
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        options["replica_cpus"] = min(1.0, math.floor(100 * cpus / max(1, len(exports))) / 100)  # 2/3 -> 0.66
    app = build_app({"exports": exports, **options})
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=APP_NAME, route_prefix="/")  # returns once every replica is healthy
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    _wait_healthy(url, timeout_s)
    return url


def _wait_healthy(url: str, timeout_s: float) -> None:
    """Poll /healthz until the proxy routes to the ingress (it can lag the app's RUNNING state)."""
    deadline, last = time.monotonic() + timeout_s, "no answer"
    with httpx.Client(timeout=5, trust_env=False) as client:
        while time.monotonic() < deadline:
            try:
                r = client.get(f"{url}/healthz")
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
    raise TimeoutError(f"{url}/healthz not healthy after {timeout_s:.0f} s (last: {last})")


def shutdown() -> None:
    """Tear down the Serve application (and Ray, if `start` started it)."""
    global _owns_ray
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        if _owns_ray:
            ray.shutdown()
    _owns_ray = False


def serve_forever(exports: dict[str, str], host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """`start`, then block until Ctrl-C or SIGTERM, then `shutdown` (the `raylessons serve` command)."""
    import signal

    def _stop(signum, frame):
        raise KeyboardInterrupt

    url = start(exports, host=host, port=port, **options)
    previous = signal.signal(signal.SIGTERM, _stop)  # `kill` from a script stops it cleanly too
    print(f"serving {sorted(exports)} at {url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutdown()
