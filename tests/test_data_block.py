"""The data-block chain on a generated Planet look-alike: splits, labels, transforms, loaders, bad input."""
import shutil

import pandas as pd
import pytest
import torch

from raylessons.data.block import ImageList, ItemList
from raylessons.data.synth.planet import TAGS
from raylessons.data.transforms import get_transforms, imagenet_stats
from raylessons.errors import DataError


def planet_src(path, **kw):
    return ImageList.from_csv(path, "train_v2.csv", folder="train-jpg", suffix=".jpg", **kw)


def test_from_csv_split_label(planet_dir):
    items = planet_src(planet_dir)
    assert len(items) == 96 and items[0] == planet_dir / "train-jpg" / "train_0.jpg"
    src = items.split_by_rand_pct(0.2, seed=42).label_from_df(label_delim=" ")
    assert (len(src.train), len(src.valid)) == (77, 19)  # fastai: int(0.2 * n) validate
    again = items.split_by_rand_pct(0.2, seed=42)
    assert [p.name for p in again.valid.items] == [p.name for p in src.valid.items]
    assert not {p.name for p in src.train.items} & {p.name for p in src.valid.items}
    assert src.classes == sorted(src.classes) and set(src.classes) <= set(TAGS)
    df = pd.read_csv(planet_dir / "train_v2.csv")
    row = df[df.image_name == src.train.items[0].stem].iloc[0]
    y = src.train_label.target(0)
    assert sorted(src.classes[i] for i in torch.nonzero(y).flatten()) == sorted(row.tags.split())


def test_databunch_batches(planet_dir):
    src = planet_src(planet_dir).split_by_rand_pct(0.2, seed=42).label_from_df(label_delim=" ")
    data = src.transform(get_transforms(flip_vert=True), size=48).databunch(bs=16).normalize(imagenet_stats)
    xb, yb = data.one_batch(train=True)
    assert xb.shape == (16, 3, 48, 48) and xb.dtype == torch.float32 and 0 <= xb.min() and xb.max() <= 1
    assert yb.shape == (16, data.c) and data.c == len(src.classes)
    assert len(data.train_dl) == 77 // 16  # drop_last on train
    assert len(data.valid_dl) == 2         # 19 items, not dropped
    nx, _ = data.to_device(xb, yb, torch.device("cpu"))
    mean = torch.tensor(imagenet_stats[0]).view(1, 3, 1, 1)
    std = torch.tensor(imagenet_stats[1]).view(1, 3, 1, 1)
    assert torch.allclose(nx, (xb - mean) / std)
    # progressive resizing: the same source at another size
    data2 = src.transform(get_transforms(), size=64).databunch(bs=8)
    assert data2.one_batch()[0].shape[-2:] == (64, 64) and data.one_batch()[0].shape[-2:] == (48, 48)


def test_show_batch_writes_png(planet_dir, tmp_path):
    data = planet_src(planet_dir).split_by_rand_pct(0.2, seed=0).label_from_df(label_delim=" ") \
        .transform(size=32).databunch(bs=9)
    out = data.show_batch(rows=3, path=tmp_path / "batch.png")
    assert out.stat().st_size > 5000 and out.read_bytes()[:4] == b"\x89PNG"


def test_test_folder(planet_dir):
    src = planet_src(planet_dir).split_by_rand_pct(0.2, seed=0).label_from_df(label_delim=" ")
    data = src.add_test_folder("test-jpg").transform(size=32).databunch(bs=4)
    assert len(data.test_ds) == 4 and data.test_dl is not None


def _folders(tmp_path, planet_dir, layout):
    for split, cls, n in layout:
        d = tmp_path / split / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shutil.copy(planet_dir / "train-jpg" / f"train_{i}.jpg", d / f"{cls}_{i}.jpg")
    return tmp_path


def test_split_by_folder_and_label_from_folder(planet_dir, tmp_path):
    root = _folders(tmp_path, planet_dir, [("train", "a", 3), ("train", "b", 2), ("valid", "a", 1),
                                           ("valid", "b", 2), ("test", "a", 1)])
    src = ImageList.from_folder(root).split_by_folder().label_from_folder()
    assert (len(src.train), len(src.valid)) == (5, 3)  # test/ is neither side
    assert src.classes == ["a", "b"] and src.train_label.kind == "category"
    assert [src.train_label.target(i).item() for i in range(5)] == [0, 0, 0, 1, 1]


def test_other_splits(planet_dir):
    items = planet_src(planet_dir)
    by_func = items.split_by_valid_func(lambda p: int(p.stem.split("_")[1]) % 4 == 0)
    assert len(by_func.valid) == 24 and all(int(p.stem[6:]) % 4 == 0 for p in by_func.valid.items)
    by_files = items.split_by_files(["train_3.jpg", "train_5.jpg"])
    assert sorted(p.name for p in by_files.valid.items) == ["train_3.jpg", "train_5.jpg"]
    labelled = items.split_by_rand_pct(0.1, seed=1).label_from_func(lambda p: "odd" if int(p.stem[6:]) % 2 else "even")
    assert labelled.classes == ["even", "odd"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_by_group_never_straddles(planet_dir, seed):
    items = planet_src(planet_dir)
    group = lambda p: int(p.stem.split("_")[1]) // 10  # 10 groups of ~10 "frames"
    split = items.split_by_group(group, valid_pct=0.2, seed=seed)
    train_groups = {group(p) for p in split.train.items}
    valid_groups = {group(p) for p in split.valid.items}
    assert not train_groups & valid_groups
    assert len(valid_groups) == 2 and len(split.train) + len(split.valid) == 96
    with pytest.raises(DataError, match="at least 2"):
        items.split_by_group(lambda p: "one", 0.2)


# ----- bad input: every error names the file and the row
def _copy_planet(planet_dir, tmp_path):
    dst = tmp_path / "planet"
    shutil.copytree(planet_dir, dst)
    return dst


def test_missing_column(planet_dir, tmp_path):
    root = _copy_planet(planet_dir, tmp_path)
    df = pd.read_csv(root / "train_v2.csv").rename(columns={"tags": "labels"})
    df.to_csv(root / "train_v2.csv", index=False)
    src = planet_src(root).split_by_rand_pct(0.2, seed=0)
    with pytest.raises(DataError, match=r"train_v2.csv.*missing column 'tags'"):
        src.label_from_df(cols="tags", label_delim=" ")


def test_listed_image_missing(planet_dir, tmp_path):
    root = _copy_planet(planet_dir, tmp_path)
    (root / "train-jpg" / "train_7.jpg").unlink()
    with pytest.raises(DataError, match=r"train_v2.csv.*row 9 .*train_7.jpg.*does not exist"):
        planet_src(root)
    skipped = planet_src(root, on_bad_item="skip")
    assert len(skipped) == 95 and all(p.name != "train_7.jpg" for p in skipped.items)


def test_corrupt_jpeg_names_the_file(planet_dir, tmp_path):
    root = _copy_planet(planet_dir, tmp_path)
    bad = root / "train-jpg" / "train_0.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    data = planet_src(root).split_by_idx(list(range(48, 96))).label_from_df(label_delim=" ") \
        .transform(size=32).databunch(bs=8)
    with pytest.raises(DataError, match="train_0.jpg.*not a readable image"):
        data.train_ds[0]


def test_empty_tag_cell(planet_dir, tmp_path):
    root = _copy_planet(planet_dir, tmp_path)
    df = pd.read_csv(root / "train_v2.csv")
    df.loc[5, "tags"] = ""
    df.to_csv(root / "train_v2.csv", index=False)
    with pytest.raises(DataError, match=r"train_v2.csv:row 7.*empty label cell for train_5.jpg"):
        planet_src(root).split_by_rand_pct(0.2, seed=0).label_from_df(label_delim=" ")


def test_tag_outside_the_class_list(planet_dir):
    src = planet_src(planet_dir).split_by_rand_pct(0.2, seed=0)
    with pytest.raises(DataError, match=r"labels \[.*\] are not in the given classes"):
        src.label_from_df(label_delim=" ", classes=["clear", "primary"])


def test_missing_csv_and_folder(tmp_path):
    with pytest.raises(DataError, match="CSV file not found"):
        ImageList.from_csv(tmp_path, "nope.csv")
    with pytest.raises(DataError, match="folder not found"):
        ItemList.from_folder(tmp_path / "none")


def test_label_from_func_returning_paths_needs_a_label_kind(planet_dir):
    from raylessons.errors import ConfigError

    split = planet_src(planet_dir).split_by_rand_pct(0.2, seed=0)
    with pytest.raises(ConfigError, match="returned file paths; pass label_cls="):
        split.label_from_func(lambda p: p.with_suffix(".png"))
