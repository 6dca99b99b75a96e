"""Checkpoint directories of a run: a manifest says a directory is whole; a restart resumes from the newest whole one.

Ray Train registers a reported checkpoint after it has copied it to storage. A worker killed in between leaves a
whole checkpoint on disk that Ray does not know about, so Ray's `get_checkpoint()` hands the restarted workers the
one before it, and an epoch is trained twice. A kill during the copy leaves a half-written directory instead.
Every checkpoint raylessons writes ends with `manifest.json` (each file and its size), written last; on restart
the newest directory whose files all match their manifest wins over an older registered one. Half-written
directories newer than it are removed. When a run ends, the directories Ray does not track are removed too.
A run stored at a URI (s3://...) keeps its checkpoints in the bucket: the same checks go through `storage`.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import posixpath
from pathlib import Path

from .. import storage

__all__ = ["MANIFEST", "checkpoint_dirs", "is_complete", "newest_complete", "position", "prune_untracked",
           "remove_dir", "write_manifest"]

log = logging.getLogger("raylessons")

MANIFEST = "manifest.json"
_NAME = re.compile(r"^checkpoint_s(\d+)_e(\d+)$")


def write_manifest(directory: str | Path) -> None:
    """Record every file under `directory` with its size; call it after the last file is written."""
    d = Path(directory)
    files = {str(p.relative_to(d)): p.stat().st_size for p in sorted(d.rglob("*")) if p.is_file()}
    files.pop(MANIFEST, None)
    (d / MANIFEST).write_text(json.dumps({"files": files}))


def is_complete(directory: str | Path) -> bool:
    """True when `directory` has a manifest and every file it lists is there with its size."""
    if storage.is_uri(directory):
        try:
            files = json.loads(storage.read_text(storage.join(directory, MANIFEST)))["files"]
            sizes = storage.file_sizes(directory)
            return all(sizes.get(name) == size for name, size in files.items())
        except (storage.StorageError, ValueError, KeyError, TypeError, AttributeError):
            return False
    d = Path(directory)
    try:
        files = json.loads((d / MANIFEST).read_text())["files"]
        return all((d / name).is_file() and (d / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def position(directory: str | Path) -> tuple[int, int] | None:
    """(stage, epoch) from a `checkpoint_sSS_eEEE` directory name, else None."""
    m = _NAME.match(Path(directory).name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def checkpoint_dirs(run_dir: str | Path) -> list:
    """The `checkpoint_sSS_eEEE` directories of `run_dir` (Paths; URIs for a run in a bucket), oldest first."""
    if storage.is_uri(run_dir):
        return [storage.join(run_dir, n) for n in storage.list_dirs(run_dir) if position(n) is not None]
    return sorted((d for d in Path(run_dir).glob("checkpoint_s*_e*") if d.is_dir() and position(d) is not None),
                  key=position)


def remove_dir(directory: str | Path) -> None:
    """Delete a checkpoint directory, local or in a bucket."""
    if storage.is_uri(directory):
        storage.delete(directory)
    else:
        shutil.rmtree(directory, ignore_errors=True)


def newest_complete(run_dir: str | Path, registered: str | Path | None, remove_newer_incomplete: bool = False
                    ) -> Path | str | None:
    """The checkpoint to resume from: the newest complete directory in `run_dir` when it is newer than
    `registered` (what Ray handed back), else `registered`. With `remove_newer_incomplete`, half-written
    directories newer than the choice are deleted (call it on one process only). For a `run_dir` URI the
    directories are URIs (`registered` too)."""
    if not storage.is_uri(run_dir):
        run_dir = Path(run_dir)
        registered = Path(registered) if registered is not None else None
    found = sorted(checkpoint_dirs(run_dir), key=position)
    complete = [d for d in found if is_complete(d)]
    choice = registered
    if complete and (registered is None or position(registered) is None
                     or position(complete[-1]) > position(registered)):
        choice = complete[-1]
    floor = position(choice) if choice is not None and position(choice) is not None else (-1, -1)
    if remove_newer_incomplete:
        for d in found:
            if position(d) > floor and not is_complete(d):
                log.warning("removing half-written checkpoint %s", d)
                remove_dir(d)
    return choice


def prune_untracked(run_dir: str | Path, tracked: set[str | Path]) -> list[Path]:
    """Remove the checkpoint directories of `run_dir` that are not in `tracked` (those Ray keeps); the removed."""
    if storage.is_uri(run_dir):  # Ray's paths lack the scheme: the names tell them apart in the run's directory
        keep_names = {posixpath.basename(str(p).rstrip("/")) for p in tracked}
        removed = [storage.join(run_dir, n) for n in storage.list_dirs(run_dir)
                   if n.startswith("checkpoint_") and n not in keep_names]
        for d in removed:
            remove_dir(d)
        return removed
    keep = {Path(p).resolve() for p in tracked}
    removed = []
    for d in Path(run_dir).glob("checkpoint_*"):
        if d.is_dir() and d.resolve() not in keep:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed
