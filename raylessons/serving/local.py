"""Start and stop the Serve application in-process (demo, tests); `serve run` is the production path."""
from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import httpx
from pydantic import ValidationError

from ..cluster import init_ray, quiet_ray_logging, ray_verbose, redirect_output
from ..errors import ConfigError

__all__ = ["APP_NAME", "IMPORT_PATH", "start", "configure", "scale", "swap", "shutdown", "serve_forever"]

APP_NAME = "raylessons"
IMPORT_PATH = "raylessons.serving.app:build_app"

# Serve's access log writes a line per request in every process on its path (proxy, ingress, model replica); on
# 2 cores that cost 8 ms of a 45 ms request at concurrency 1 (bench/serve_load.py --access-log). Errors and
# warnings are still logged. serve/config.yaml says the same.
LOGGING_CONFIG = {"enable_access_log": False}

_owns_ray = False  # shutdown() stops Ray only if start() started it
_started: dict = {}  # what start() deployed: args (the app's arguments), user_configs (per task), url, host, port


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
    # attach to RAY_ADDRESS, else a private instance ("local": never a stale cluster file of an earlier `ray start`)
    if init_ray(verbose=verbose, log_dir=log_dir, dashboard=False):
        _owns_ray = True
    if not ray_verbose(verbose):  # importing ray.serve gave its logger a console handler again
        quiet_ray_logging(log_dir)
    if "replica_cpus" not in options:
        # one replica per model must fit on this machine (4 models on 2 cores: 1/2 CPU each), or Serve waits forever
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        options["replica_cpus"] = min(1.0, math.floor(100 * cpus / max(1, len(exports))) / 100)  # 2/3 -> 0.66
    serve.start(http_options={"host": host, "port": port})
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    _started.clear()
    _started.update(args={"exports": dict(exports), **options}, user_configs={}, url=url, host=host, port=port,
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
    _started["deployments"].setdefault(task, {}).update(options)
    _deploy(timeout_s)


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
