"""Ray Serve: one HTTP application with a route per task and dynamic batching per model."""
from .app import ROUTES, AppArgs, build_app
from .local import configure, serve_forever, shutdown, start, swap

__all__ = ["AppArgs", "ROUTES", "build_app", "start", "configure", "swap", "shutdown", "serve_forever"]
