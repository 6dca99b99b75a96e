"""The Serve application: `build_app` binds a FastAPI ingress routing `POST /<task>` to one model deployment per
task (`serve run raylessons.serving.app:build_app exports=...`, serve/config.yaml, `raylessons.serving.start`).

    settings, queries, exports  <-  replicas  <-  routes  <-  ingress  <-  app

Adding a task is one `ROUTES` entry in routes.py. No `from __future__ import annotations` here: Serve
recognises the typed builder by `build_app`'s real (not string) annotation.
"""
from pydantic import ValidationError
from ray.serve import Application

from ..errors import ConfigError
from .ingress import Ingress
from .routes import ROUTES, checked_export
from .settings import AppArgs

__all__ = ["build_app"]


def build_app(args: AppArgs) -> Application:
    """The Serve application for `args.exports` (a dict is accepted too: `build_app({"exports": {...}})`)."""
    if not isinstance(args, AppArgs):
        try:
            args = AppArgs.model_validate(args)
        except ValidationError as e:
            raise ConfigError(f"invalid application arguments: {e}") from None
    if not args.exports:
        raise ConfigError(f"no exports given; known tasks: {sorted(ROUTES)}")
    handles = {}
    for task, path in args.exports.items():
        if task not in ROUTES:
            raise ConfigError(f"unknown task {task!r}; known tasks: {sorted(ROUTES)}")
        export, _ = checked_export(task, path, args.export_root)  # missing/malformed/wrong export: fail now
        route = ROUTES[task]
        # The export is an init argument (what a new replica loads) and the start of user_config, where a config
        # deploy may name another one: `reconfigure` then swaps the model live, if it holds the route's kind.
        # max_ongoing_requests >= batch size, or batches never fill (Serve's default of 5 collapses under load).
        handles[task] = route.model.options(
            name=task, max_ongoing_requests=max(32, args.max_batch_size),
            ray_actor_options={"num_cpus": args.replica_cpus}, user_config=args.model_config_for(str(export)),
        ).bind(task, str(export), args.max_pixels, args.export_root, route.export_kind)
    return Ingress.bind(handles, args.max_body_bytes, args.request_timeout_s, args.replica_retries,
                        args.body_timeout_s)
