"""Data faults: a corrupt image, a truncated mask, a CSV row of an unknown layout, an empty review.

Each stops training with a DataError naming the file (the default, on_bad_item="raise"), or, only when the user
asked (on_bad_item="skip"), is left out with one log line naming it while training goes on.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from raylessons.errors import ConfigError, DataError
from raylessons.testing.faults import truncate_file


def _skips(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "on_bad_item='skip'" in r.getMessage()]


@pytest.fixture
def small_planet(planet_dir, tmp_path) -> Path:
    root = tmp_path / "planet"
    shutil.copytree(planet_dir, root)
    return root


def _planet_learner(root: Path, **cfg):
    from raylessons.tasks.planet import Config, build_data, build_learner

    config = Config(data=str(root), size=32, bs=16, arch="resnet18", **cfg)
    return build_learner(build_data(config), config)


def test_corrupt_image_stops_training_naming_it_or_is_skipped(small_planet, caplog):
    from raylessons.tasks.planet import Config, build_source

    bad = build_source(Config(data=str(small_planet))).valid.items[0]  # validation meets every item, every epoch
    truncate_file(bad)
    learn = _planet_learner(small_planet)
    with pytest.raises(DataError, match=rf"{bad.name}: not a readable image"):
        learn.fit_one_cycle(1, 1e-3)

    caplog.set_level(logging.WARNING, logger="raylessons")
    learn = _planet_learner(small_planet, on_bad_item="skip")
    learn.fit_one_cycle(1, 1e-3)
    assert len(learn.recorder.losses) > 0 and all(loss == loss for loss in learn.recorder.losses)  # no NaN
    assert list(learn.data.valid_ds.skipped) == [0] and bad.name in learn.data.valid_ds.skipped[0]
    learn.validate()  # met again: skipped again, not logged again
    assert sum(bad.name in m for m in _skips(caplog)) == 1


def test_truncated_mask_names_the_mask_or_is_skipped(tmp_path, caplog):
    from raylessons.data.synth import synth
    from raylessons.tasks.camvid import Config, build_data

    root = synth("camvid", tmp_path / "camvid", n=8, size=(48, 64), seed=0)
    valid = {line.strip() for line in (root / "valid.txt").read_text().splitlines()}
    train_images = sorted(p for p in (root / "images").glob("*.png") if p.name not in valid)
    mask = root / "labels" / f"{train_images[0].stem}_P.png"
    truncate_file(mask, keep=120)
    data = build_data(Config(data=str(root), size=[32, 48], bs=2))
    with pytest.raises(DataError, match=rf"{mask.name}: not a readable image"):
        for _ in data.train_ds:
            pass

    caplog.set_level(logging.WARNING, logger="raylessons")
    data = build_data(Config(data=str(root), size=[32, 48], bs=2, on_bad_item="skip"))
    batches = list(data.train_dl) + list(data.valid_dl)
    assert batches and all(yb.dtype.is_floating_point is False for _, yb in batches)
    assert sum(len(xb) for xb, _ in data.valid_dl) == len(data.valid_ds)  # valid batches keep every slot
    assert list(data.train_ds.skipped) == [0] and mask.name in data.train_ds.skipped[0]
    assert [m for m in _skips(caplog) if mask.name in m]
    # a mask that is missing altogether: named at labelling, or logged there and skipped when met
    (root / "labels" / f"{train_images[1].stem}_P.png").unlink()
    with pytest.raises(DataError, match=f"label file for image {train_images[1].name} not found"):
        build_data(Config(data=str(root), size=[32, 48], bs=2))
    data = build_data(Config(data=str(root), size=[32, 48], bs=2, on_bad_item="skip"))
    list(data.train_dl)
    assert sorted(data.train_ds.skipped) == [0, 1]


def test_csv_row_with_an_unknown_layout(small_planet, caplog):
    from raylessons.tasks.planet import Config, build_source

    csv = small_planet / "train_v2.csv"
    lines = csv.read_text().splitlines()
    lines[5] = lines[5] + ",extra,fields"  # row 5 of the file: three fields more than the header
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train_v2\.csv: cannot parse CSV.*Expected 2 fields in line 6, saw 4"):
        build_source(Config(data=str(small_planet)))

    caplog.set_level(logging.WARNING, logger="raylessons")
    src = build_source(Config(data=str(small_planet), on_bad_item="skip"))
    name = lines[5].split(",")[0]
    assert len(src.train) + len(src.valid) == 95
    assert name not in {p.stem for p in [*src.train.items, *src.valid.items]}
    (msg,) = _skips(caplog)
    assert "train_v2.csv" in msg and "4 fields where the header has 2" in msg and name in msg
    with pytest.raises(ConfigError, match="on_bad_item must be 'raise' or 'skip', not 'ignore'"):
        build_source(Config(data=str(small_planet), on_bad_item="ignore"))  # a job's --set on_bad_item=ignore


def test_empty_review(tmp_path, caplog):
    from raylessons.data.synth.imdb import synth
    from raylessons.data.text import TextList
    from raylessons.tasks import imdb_lm

    root = synth(tmp_path / "imdb", n_train=20, n_test=10, n_unsup=0, n_sample=0)
    empty = sorted((root / "train" / "pos").glob("*.txt"))[0]
    empty.write_text("  \n")
    data = imdb_lm.Config(data=str(root), include=["train", "test"], bs=4, bptt=10)
    with pytest.raises(DataError, match=rf"{empty.name}: empty text file"):
        imdb_lm.build_data(data)

    caplog.set_level(logging.WARNING, logger="raylessons")
    lm = imdb_lm.build_data(imdb_lm.Config(data=str(root), include=["train", "test"], bs=4, bptt=10,
                                           on_bad_item="skip"))
    assert len(lm.train_ds) + len(lm.valid_ds) == 29
    assert [m for m in _skips(caplog) if empty.name in m]
    # the classifier's chain keeps texts and labels aligned when one is left out
    clas = (TextList.from_folder(root, on_bad_item="skip").split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]))
    assert len(clas.train) == 19 and empty not in clas.train.items
    labels = [int(clas.train_label.target(i)) for i in range(len(clas.train))]
    assert labels == [["neg", "pos"].index(Path(p).parent.name) for p in clas.train.items]
    # empty cells of a CSV of texts
    import pandas as pd

    pd.DataFrame({"label": ["pos", "neg", "pos"], "text": ["fine film", "", "bad"]}).to_csv(tmp_path / "t.csv",
                                                                                            index=False)
    with pytest.raises(DataError, match=r"t\.csv:row 3: empty text in column 'text'"):
        TextList.from_csv(tmp_path, "t.csv")
    texts = TextList.from_csv(tmp_path, "t.csv", on_bad_item="skip")
    assert texts.items == ["fine film", "bad"] and list(texts.df["label"]) == ["pos", "pos"]
