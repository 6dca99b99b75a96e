"""Which checkpoint a restarted run resumes from, and what is cleaned up (no Ray: directories as Ray leaves them)."""
import json
import shutil
from pathlib import Path

import torch

from raylessons.distributed.checkpoints import (MANIFEST, is_complete, newest_complete, position, prune_untracked,
                                                write_manifest)


def _checkpoint(run: Path, stage: int, epoch: int, export: bool = False) -> Path:
    """A checkpoint directory written as `_report_epoch` writes one (state, position, optional export, manifest)."""
    d = run / f"checkpoint_s{stage:02d}_e{epoch:03d}"
    d.mkdir(parents=True)
    torch.save({"model": {"w": torch.full((64,), float(epoch))}}, d / "state.pt")
    (d / "position.json").write_text(json.dumps({"stage": stage, "epoch": epoch}))
    if export:
        (d / "export").mkdir()
        (d / "export" / "meta.json").write_text("{}")
    write_manifest(d)
    return d


def test_manifest_tells_whole_from_half_written(tmp_path):
    d = _checkpoint(tmp_path, 0, 0, export=True)
    assert is_complete(d) and set(json.loads((d / MANIFEST).read_text())["files"]) == {
        "state.pt", "position.json", "export/meta.json"}
    cut = tmp_path / "cut"
    shutil.copytree(d, cut)
    data = (cut / "state.pt").read_bytes()
    (cut / "state.pt").write_bytes(data[: len(data) // 2])  # a copy interrupted mid-file
    assert not is_complete(cut)
    missing = tmp_path / "missing"
    shutil.copytree(d, missing)
    (missing / "export" / "meta.json").unlink()  # the manifest arrived, a file did not
    assert not is_complete(missing)
    (missing / "export" / "meta.json").write_text("{}")
    assert is_complete(missing)
    (d / MANIFEST).write_text("not json")
    assert not is_complete(d) and not is_complete(tmp_path / "nowhere")
    assert position(d) == (0, 0) and position(tmp_path / "checkpoint_x") is None


def test_resume_from_the_newest_whole_checkpoint(tmp_path):
    run = tmp_path / "run"
    registered = _checkpoint(run, 0, 0)
    unregistered = _checkpoint(run, 0, 1)  # reported and copied, but Ray died before registering it
    half = _checkpoint(run, 1, 0)
    (half / "state.pt").write_bytes(b"cut")  # the copy of the next one was interrupted
    no_manifest = run / "checkpoint_s01_e001"
    no_manifest.mkdir()
    (no_manifest / "state.pt").write_bytes(b"partial")

    assert newest_complete(run, registered) == unregistered  # not the one Ray offers
    assert half.exists() and no_manifest.exists()  # only the process asked to clean up removes anything
    assert newest_complete(run, registered, remove_newer_incomplete=True) == unregistered
    assert not half.exists() and not no_manifest.exists() and registered.exists() and unregistered.exists()
    # Ray's choice stands when nothing whole is newer, and when Ray offers nothing a whole directory is found
    assert newest_complete(run, unregistered) == unregistered
    assert newest_complete(run, None) == unregistered
    assert newest_complete(tmp_path / "empty", None) is None


def test_directories_without_manifest_never_override_ray(tmp_path):
    """Checkpoints written before manifests existed (or by hand): Ray's registered one is used as before."""
    run = tmp_path / "run"
    registered = run / "checkpoint_s00_e000"
    newer = run / "checkpoint_s00_e001"
    for d in (registered, newer):
        d.mkdir(parents=True)
        (d / "state.pt").write_bytes(b"old layout")
    assert newest_complete(run, registered, remove_newer_incomplete=False) == registered
    assert newest_complete(run, registered, remove_newer_incomplete=True) == registered and not newer.exists()


def test_prune_untracked(tmp_path):
    run = tmp_path / "run"
    dirs = [_checkpoint(run, 0, e) for e in range(3)]
    (run / "export").mkdir()
    removed = prune_untracked(run, {dirs[2], str(dirs[1])})
    assert removed == [dirs[0]] and not dirs[0].exists() and dirs[1].exists() and dirs[2].exists()
    assert (run / "export").exists()  # only checkpoint directories are touched
