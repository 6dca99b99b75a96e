"""Ray Serve: one HTTP application with a route per task and dynamic batching per model."""
from .app import ROUTES, AppArgs, build_app
from .local import serve_forever, shutdown, start

__all__ = ["AppArgs", "ROUTES", "build_app", "start", "shutdown", "serve_forever"]
