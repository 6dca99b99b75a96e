"""Ray Serve: one HTTP application with a route per task and dynamic batching per model."""
from .app import build_app
from .local import configure, serve_forever, shutdown, start, swap
from .routes import ROUTES
from .settings import AppArgs

__all__ = ["ROUTES", "AppArgs", "build_app", "configure", "serve_forever", "shutdown", "start", "swap"]
