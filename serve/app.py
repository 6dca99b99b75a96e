"""Serve entrypoint (thin): `serve run serve.app:build_app exports='{"planet": "/path/to/export"}'`.

`serve.app:app` builds the application from $RAYLESSONS_EXPORTS (the same JSON object) when it is read.
"""
import os

from raylessons.serving.app import AppArgs, build_app

__all__ = ["AppArgs", "build_app"]


def __getattr__(name: str):
    # lazy: importing this module (for build_app) must not need the environment variable
    if name == "app":
        exports = os.environ.get("RAYLESSONS_EXPORTS")
        if not exports:
            raise AttributeError("serve.app:app needs RAYLESSONS_EXPORTS='{\"planet\": \"/path/to/export\"}'; "
                                 "or use serve.app:build_app exports=...")
        return build_app({"exports": exports})
    raise AttributeError(name)
