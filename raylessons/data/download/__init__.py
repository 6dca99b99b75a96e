"""Real downloads of the lesson's datasets and weights, for machines that can reach them."""
from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["DOWNLOADS", "download"]

# name -> module that implements it
DOWNLOADS = {
    "planet": "planet",
    "camvid": "archives",
    "biwi": "archives",
    "imdb": "archives",
    "imdb_sample": "archives",
    "wt103": "archives",
}


def download(name: str, dest: str | Path | None = None) -> Path:
    """Fetch and unpack dataset `name` into `dest` (default ~/.raylessons/data/<name>)."""
    if name not in DOWNLOADS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DOWNLOADS)}")
    dest = Path(dest) if dest else Path.home() / ".raylessons" / "data" / name
    module = importlib.import_module(f"raylessons.data.download.{DOWNLOADS[name]}")
    return module.download(name, dest)
