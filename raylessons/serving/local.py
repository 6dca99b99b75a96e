"""Start and stop the Serve application in-process (demo, tests); `serve run` is the production path."""
from __future__ import annotations

import math
import os
import signal
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from pydantic import ValidationError

from ..cluster import init_ray, quiet_ray_logging, ray_verbose, redirect_output
from ..errors import ConfigError

__all__ = ["APP_NAME", "IMPORT_PATH", "direct_ingress_env", "direct_ingress", "init_ray_direct", "start",
           "proxy_url", "configure", "scale", "swap", "shutdown", "serve_forever"]

APP_NAME = "raylessons"
IMPORT_PATH = "raylessons.serving.app:build_app"

# Serve's access log writes a line per request in every process on its path (proxy, ingress, model replica); on
# 2 cores that cost 8 ms of a 45 ms request at concurrency 1 (bench/serve_load.py --access-log). Errors and
# warnings are still logged. serve/config.yaml says the same.
LOGGING_CONFIG = {"enable_access_log": False}


def direct_ingress_env(port: int, ports: int = 1) -> dict[str, str]:
    """The environment of a Ray instance whose Serve ingress replica answers HTTP itself, at `port`.

    Serve's direct ingress (read by Serve's processes when they start, so it is set before Ray starts): the
    Ingress replica runs its own HTTP server and the client's request goes straight to it, without a hop through
    Serve's proxy actor (on 2 cores: 1.07-1.39x the requests per second at concurrency 32 in every run of
    `bench/serve_load.py`'s proxy point so far; at concurrency 1, 1-16 ms sooner in all runs but one). Serve's proxy still runs, on a port of its own, and still
    answers every route the slower way.

    Serve gives ingress replicas the lowest free port of [port, port + ports): the application deployed first
    gets `port`; one Ingress replica per node. A port a stopped replica held is free again at once (Serve's
    default keeps it 150 s for HAProxy, so a restarted Ingress would wait that long), and a stopping Ingress
    waits for the requests it holds, not an extra 30 s for load balancers.
    """
    return {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + ports),  # Serve's range excludes its end
            "RAY_SERVE_PORT_QUARANTINE_S": "0", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0"}


@contextmanager
def direct_ingress(port: int, ports: int = 1):
    """Meanwhile, `direct_ingress_env(port, ports)` is in os.environ: a Ray started meanwhile in this process passes
    it to all its processes (`with direct_ingress(8000): ray.init(...)`)."""
    env = direct_ingress_env(port, ports)
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def init_ray_direct(port: int, ports: int = 1, **kwargs) -> bool:
    """`cluster.init_ray(**kwargs)`; a private instance it starts gets `direct_ingress_env(port, ports)`, so that an
    application `start`ed on it later at `port` is answered by its Ingress replica directly. (Attaching to a
    running Ray changes nothing there.) Whether this call started Ray."""
    with direct_ingress(port, ports):
        return init_ray(**kwargs)


def _ray_env(keys) -> dict[str, str | None]:
    """`keys` of the environment Ray's worker processes get (set when the cluster started), from a tiny task."""
    import ray

    @ray.remote(num_cpus=0)
    def read(names):
        return {k: os.environ.get(k) for k in names}

    return ray.get(read.remote(list(keys)), timeout=120)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_owns_ray = False  # shutdown() stops Ray only if start() started it
# what start() deployed: args (the app's arguments), user_configs (per task), url, host, port (Serve's proxy's)
_started: dict = {}


def start(exports: dict[str, str], host: str = "127.0.0.1", port: int = 8000, timeout_s: float = 180,
          deployments: dict[str, dict] | None = None, logging_config: dict | None = None,
          verbose: bool | None = None, log_dir: str | Path | None = None, **options) -> str:
    """Serve `exports` (task -> export dir) at http://host:port and wait until /healthz answers; the base URL.

    The application is deployed from a config, as `serve deploy serve/config.yaml` does (the controller builds
    it from `raylessons.serving.app:build_app` and these arguments), so `configure` and `swap` change it the
    way a second `serve deploy` does: live, through `user_config`, without restarting replicas.
    Ray is attached to by `cluster.init_ray` (RAY_ADDRESS, else a private instance), quiet unless `verbose`, with
    `log_dir/ray.log`. `logging_config` is the application's (default `LOGGING_CONFIG`: no access log).
    """
    global _owns_ray
    import ray
    from ray import serve

    from .app import build_app

    build_app({"exports": exports, **options})  # bad exports fail here, before Ray starts
    _check_one_ingress(deployments or {})
    # attach to RAY_ADDRESS, else a private instance ("local": never a stale cluster file of an earlier `ray start`)
    # whose Ingress replica answers at `port` itself (direct_ingress_env)
    if init_ray_direct(port, verbose=verbose, log_dir=log_dir, dashboard=False):
        _owns_ray = True
    # asked of Ray's workers: a cluster started elsewhere (RAY_ADDRESS, a test's) may not have these variables; then
    # Serve's proxy answers at `port`
    keys = ("RAY_SERVE_ENABLE_DIRECT_INGRESS", "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT")
    direct = _ray_env(keys) == {k: direct_ingress_env(port)[k] for k in keys}
    if not ray_verbose(verbose):  # importing ray.serve gave its logger a console handler again
        quiet_ray_logging(log_dir)
    if "replica_cpus" not in options:
        # one replica per model must fit on this machine (4 models on 2 cores: 1/2 CPU each), or Serve waits forever
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        options["replica_cpus"] = min(1.0, math.floor(100 * cpus / max(1, len(exports))) / 100)  # 2/3 -> 0.66
    local_host = _reachable(host)
    url = f"http://{local_host}:{port}"
    previous = _started.get("port") if _started.get("url") == url else None  # started again: the proxy stays put
    proxy_port = (previous or _free_port(local_host)) if direct else port
    serve.start(http_options={"host": host, "port": proxy_port})
    _started.clear()
    _started.update(args={"exports": dict(exports), **options}, user_configs={}, url=url, host=host, port=proxy_port,
                    deployments=dict(deployments or {}),
                    logging_config=dict(LOGGING_CONFIG if logging_config is None else logging_config))
    _deploy(timeout_s)
    _wait_healthy(url, timeout_s)
    return url


def _deploy(timeout_s: float) -> None:
    """Apply the application config (what `serve deploy` sends: the app's args, plus a `user_config` for each
    deployment reconfigured since start) and wait until Serve reports this deploy running."""
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    options = {name: dict(opts) for name, opts in _started["deployments"].items()}
    for task, cfg in _started["user_configs"].items():
        options.setdefault(task, {})["user_config"] = cfg
    deployments = [{"name": name, **opts} for name, opts in options.items()]
    config = ServeDeploySchema.model_validate({
        "http_options": {"host": _started["host"], "port": _started["port"]},
        "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH,
                          "args": _started["args"], "deployments": deployments,
                          **({"logging_config": lc} if (lc := _started["logging_config"]) else {})}]})
    sent = time.time()
    _get_global_client().deploy_apps(config)
    deadline, status = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP_NAME)
        status = app and app.status
        # this deploy (not the previous one) is done: every deployment healthy, every replica running
        if (status == "RUNNING" and app.last_deployed_time_s >= sent - 1
                and all(d.status == "HEALTHY" and set(d.replica_states) == {"RUNNING"}
                        for d in app.deployments.values())):
            return
        if status == "DEPLOY_FAILED":
            raise RuntimeError(f"Serve could not deploy {APP_NAME}: {app.message}")
        time.sleep(0.2)
    raise TimeoutError(f"{APP_NAME} not running after {timeout_s:.0f} s (status {status})")


def configure(task: str, timeout_s: float = 180, **changes) -> dict:
    """Change `task`'s model deployment live (`export`, `max_batch_size`, `batch_wait_timeout_s`, `threads`):
    the new `user_config` reaches its running replicas through `reconfigure` (no restart), as a `serve deploy`
    of a config whose deployment entry sets `user_config` does. Returns the deployment's new `user_config`."""
    cfg = _set_user_config(task, changes)
    _deploy(timeout_s)
    return cfg


def _set_user_config(task: str, changes: dict) -> dict:
    """Record `task`'s next `user_config` (its current one with `changes`) for the next `_deploy`."""
    from .exports import resolve_export
    from .settings import AppArgs, ModelConfig

    if not _started:
        raise RuntimeError("configure() and swap() need an application started by start()")
    args = AppArgs.model_validate(_started["args"])
    if task not in args.exports:
        raise ConfigError(f"task {task!r} is not served; served: {sorted(args.exports)}")
    current = _started["user_configs"].get(task) or args.model_config_for(
        str(resolve_export(task, args.exports[task], args.export_root)))
    try:
        cfg = ModelConfig.model_validate({**current, **changes}).model_dump()
    except ValidationError as e:
        raise ConfigError(f"{task}: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
    _started["user_configs"][task] = cfg
    return cfg


def scale(task: str, timeout_s: float = 180, **options) -> None:
    """Change `task`'s deployment options in the config (e.g. `num_replicas=2`, `autoscaling_config={...}`),
    as editing its entry under `deployments:` and running `serve deploy` again does; returns once running."""
    if not _started:
        raise RuntimeError("scale() needs an application started by start()")
    changed = {**_started["deployments"].get(task, {}), **options}
    _check_one_ingress({task: changed})
    _started["deployments"][task] = changed
    _deploy(timeout_s)


def _check_one_ingress(deployments: dict[str, dict]) -> None:
    """Direct ingress gives the Ingress one port per node: a second replica could never start (the proxy path of a
    cluster without direct ingress could run more, but one async Ingress keeps up with many model replicas)."""
    ingress = deployments.get("Ingress", {})
    if ingress.get("num_replicas", 1) != 1 or ingress.get("autoscaling_config"):
        raise ConfigError(f"the Ingress answers HTTP itself at one port per node: it runs one replica, got "
                          f"{ {k: ingress[k] for k in ('num_replicas', 'autoscaling_config') if k in ingress} }; "
                          f"scale the model deployments instead")


def swap(exports: dict[str, str], timeout_s: float = 180) -> None:
    """Serve other exports (task -> export dir) without downtime: each new path reaches the running replicas
    through their `user_config`; requests in flight finish on the old model. Returns once GET /models shows
    every new export; an export that cannot be served fails before anything changes."""
    from .routes import checked_export
    from .settings import AppArgs

    args = AppArgs.model_validate(_started.get("args") or {"exports": {}})
    wanted = {}
    for task, path in exports.items():
        if task not in args.exports:
            raise ConfigError(f"task {task!r} is not served; served: {sorted(args.exports)}")
        wanted[task] = str(checked_export(task, path, args.export_root)[0])
    for task, export in wanted.items():
        _set_user_config(task, {"export": export})
    _deploy(timeout_s)  # one config deploy for every swapped task
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=_started["url"], timeout=30, trust_env=False) as client:
        while True:
            served = {m["task"]: m for m in client.get("/models").json()["models"]}
            errors = {t: served[t]["swap_error"] for t in wanted if "swap_error" in served[t]}
            if errors:
                raise RuntimeError(f"swap refused: {errors}")
            if all(served[t]["export"] == path for t, path in wanted.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"swap not done after {timeout_s:.0f} s: serving "
                                   f"{ {t: served[t]['export'] for t in wanted} }")
            time.sleep(0.1)


def proxy_url() -> str:
    """The URL of Serve's proxy: the app's URL, or with direct ingress a second, slower way in (one more hop)."""
    if not _started:
        raise RuntimeError("proxy_url() needs an application started by start()")
    return f"http://{_reachable(_started['host'])}:{_started['port']}"


def _reachable(host: str) -> str:
    """Where this machine reaches a server bound to `host` (all interfaces: through loopback)."""
    return '127.0.0.1' if host in ('0.0.0.0', '') else host


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
    _started.clear()


def serve_forever(exports: dict[str, str], host: str = "127.0.0.1", port: int = 8000, verbose: bool = False,
                  log_dir: str | Path | None = None, **options) -> None:
    """`start`, then block until Ctrl-C or SIGTERM, then `shutdown` (the `raylessons serve` command).

    Quiet unless `verbose`: Ray's and Serve's own lines go to `log_dir/ray.log` and the Ray session's logs."""
    def _stop(signum, frame):
        raise KeyboardInterrupt

    log_dir = Path(log_dir).expanduser() if log_dir is not None else None
    url = start(exports, host=host, port=port, verbose=verbose, log_dir=log_dir, **options)
    previous = signal.signal(signal.SIGTERM, _stop)  # `kill` from a script stops it cleanly too
    print(f"serving {sorted(exports)} at {url} (Ctrl-C stops)"
          + ("" if verbose or log_dir is None else f"; Ray's log lines: {log_dir / 'ray.log'}"), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: a normal end
        print("stopping", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        with redirect_output(None if verbose or log_dir is None else log_dir / "ray.log"):
            shutdown()
