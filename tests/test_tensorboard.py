"""TensorBoard event files of in-process fits (Learner.log_to_tensorboard), read back by TensorBoard's own reader."""
from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from raylessons.callbacks import TensorBoardCallback
from raylessons.tasks import planet


@pytest.fixture(scope="module")
def data(planet_dir):
    cfg = planet.Config(data=str(planet_dir), size=32, bs=16, arch="resnet18")
    return planet.build_data(cfg), cfg


def make_learner(data, **kw):
    torch.manual_seed(0)
    d, cfg = data
    learn = planet.build_learner(d, cfg, **kw)
    learn.recorder.verbose = False
    return learn


def tiny_learner(data):
    """A two-group conv net on the same data, for the tests that need no resnet."""
    from torch import nn

    from raylessons.learner import Learner

    torch.manual_seed(0)
    d, _ = data
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, d.c))
    learn = Learner(d, model, splitter=lambda m: [m[:2], m[2:]], device="cpu")
    learn.recorder.verbose = False
    return learn


def read_events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def steps(events, tag: str) -> list[int]:
    return [e.step for e in events.Scalars(tag)]


def values(events, tag: str) -> list[float]:
    return [e.value for e in events.Scalars(tag)]


def test_fits_and_lr_find_are_logged(data, tmp_path):
    learn = make_learner(data, path=tmp_path)
    cb = learn.log_to_tensorboard()
    assert cb.log_dir.parent == tmp_path / "runs" and cb in learn.callbacks
    learn.lr_find(num_it=6, end_lr=1)
    finder_lrs, finder_losses = list(learn.recorder.lrs), list(learn.recorder.losses)
    learn.freeze()
    learn.fit_one_cycle(2, slice(1e-2))
    first_val = list(learn.recorder.val_losses)
    learn.unfreeze()
    learn.fit_one_cycle(1, slice(1e-5, 1e-3))
    n_batches = 3 * len(learn.data.train_dl)

    events = read_events(cb.log_dir)
    n_groups = len(learn.layer_groups)
    scalars = set(events.Tags()["scalars"])
    assert scalars == {"train/loss", "valid/loss", *(f"metrics/{n}" for n in learn.metric_names),
                       *(f"lr/group_{i}" for i in range(n_groups)), *(f"mom/group_{i}" for i in range(n_groups)),
                       "lr_find/loss", "lr_find/lr"}
    assert learn.metric_names == ["accuracy_thresh", "fbeta"]
    # one train/loss point per training batch of the fits (the finder's batches are not counted), steps across fits
    assert steps(events, "train/loss") == list(range(n_batches))
    # one point per epoch of each per-epoch tag, the epoch counted across fits
    per_epoch = ["valid/loss", "metrics/accuracy_thresh", "metrics/fbeta",
                 *(f"{kind}/group_{i}" for kind in ("lr", "mom") for i in range(n_groups))]
    for tag in per_epoch:
        assert steps(events, tag) == [0, 1, 2], tag
    valid = values(events, "valid/loss")
    np.testing.assert_allclose(valid, first_val + list(learn.recorder.val_losses), rtol=1e-6)
    # the lrs and momentums in force at each epoch's last batch: one-cycle's end, per group
    last = learn.opt.param_groups
    np.testing.assert_allclose([values(events, f"lr/group_{i}")[-1] for i in range(n_groups)],
                               [g["lr"] for g in last], rtol=1e-6)
    assert values(events, "lr/group_0")[-1] < values(events, f"lr/group_{n_groups - 1}")[-1]  # discriminative lrs
    assert values(events, "mom/group_0")[-1] == pytest.approx(last[0]["betas"][0])
    # the LR finder's whole curve: iteration -> smoothed loss and lr (increasing)
    assert steps(events, "lr_find/loss") == steps(events, "lr_find/lr") == list(range(len(finder_lrs)))
    assert len(finder_lrs) == 6
    np.testing.assert_allclose(values(events, "lr_find/lr"), finder_lrs, rtol=1e-6)
    np.testing.assert_allclose(values(events, "lr_find/loss"), finder_losses, rtol=1e-5)
    assert np.all(np.diff(values(events, "lr_find/lr")) > 0)
    # show_batch once, at the first fit: the training batch's images, as one grid in [0, 1]
    assert events.Tags()["images"] == ["show_batch"]
    (image,) = events.Images("show_batch")
    assert image.step == 0
    grid = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    assert grid.shape[2] == 3 and grid.shape[0] >= 32 and grid.shape[1] >= 4 * 32 and grid.std() > 0


def test_a_second_finder_run_gets_its_own_tags_and_a_new_callback_replaces_the_old(data, tmp_path):
    learn = tiny_learner(data)
    first = learn.log_to_tensorboard(tmp_path / "a")
    learn.lr_find(num_it=4, end_lr=1)
    learn.lr_find(num_it=5, end_lr=1)
    events = read_events(tmp_path / "a")
    assert steps(events, "lr_find/loss") == list(range(4))
    assert steps(events, "lr_find_2/loss") == steps(events, "lr_find_2/lr") == list(range(5))
    assert "train/loss" not in events.Tags()["scalars"] and "valid/loss" not in events.Tags()["scalars"]
    second = learn.log_to_tensorboard(tmp_path / "b")
    assert first.writer is None and first not in learn.callbacks and second in learn.callbacks
    assert [c for c in learn.callbacks if isinstance(c, TensorBoardCallback)] == [second]


def test_only_the_main_process_writes_and_training_is_unchanged(data, tmp_path):
    """A DDP rank > 0 writes nothing; logging (show_batch's batch included) draws no random numbers from the fit."""
    quiet = tiny_learner(data)
    quiet.is_main_process = False
    cb = quiet.log_to_tensorboard(tmp_path / "rank1")
    quiet.fit(1, 1e-3)
    assert cb.writer is None and not (tmp_path / "rank1").exists()
    plain = tiny_learner(data)
    torch.manual_seed(1)
    plain.fit(1, 1e-3)
    logged = tiny_learner(data)
    logged.log_to_tensorboard(tmp_path / "main")
    torch.manual_seed(1)
    logged.fit(1, 1e-3)
    assert logged.recorder.losses == plain.recorder.losses
    assert len(read_events(tmp_path / "main").Images("show_batch")) == 1


def test_resumed_steps_and_purge(tmp_path):
    """A writer resumed at step N hides what an earlier writer of the directory logged at steps >= N."""
    first = TensorBoardCallback(tmp_path)
    w = first._open()
    for step in range(10):  # a run cut short in its third epoch of 4 batches
        w.add_scalar("train/loss", 1.0, step)
    first.close()
    again = TensorBoardCallback(tmp_path, batch_step=8, epoch_step=2, resume=True)
    again("before_fit", SimpleNamespace(is_main_process=True, data=None))  # the directory has its show_batch
    w = again.writer
    for step in range(8, 12):
        w.add_scalar("train/loss", 2.0, step)
    again.close()
    events = read_events(tmp_path)
    points = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert points == [(s, 1.0 if s < 8 else 2.0) for s in range(12)]
    assert events.Tags()["images"] == []


def test_text_data_gets_a_few_decoded_texts(tmp_path):
    from raylessons.data.synth.imdb import synth
    from raylessons.data.text import TextList

    imdb = synth(tmp_path / "imdb", n_train=12, n_test=8, n_unsup=0, n_sample=0)
    data = (TextList.from_folder(imdb).split_by_folder(valid="test").label_from_folder(classes=["neg", "pos"])
            .databunch(bs=4))
    cb = TensorBoardCallback(tmp_path / "tb")
    learn = SimpleNamespace(is_main_process=True, data=data)
    cb("before_fit", learn)
    cb("after_fit", learn)
    cb.close()
    events = read_events(tmp_path / "tb")
    (text,) = events.Tensors("show_batch/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    assert shown.startswith("0. ") and data.train_ds.text(0).split()[0] in shown and "3. " in shown
    assert events.Tags()["images"] == []
