"""Segmentation and points data blocks: targets stay with their images, errors name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raylessons.data.biwi import get_ctr
from raylessons.data.vision import PointsItemList, SegmentationItemList
from raylessons.data.transforms import RandomDihedral, get_transforms, imagenet_stats
from raylessons.data.vision import read_codes
from raylessons.errors import ConfigError, DataError
from raylessons.metrics import MSELossFlat

CODES = ["Background", "Red", "Void"]


def _write_pair(root: Path, stem: str, rng: np.random.Generator, hw=(40, 56)) -> None:
    """An image of red blobs on grey and the mask derived from the image itself (red -> 1)."""
    h, w = hw
    img = np.full((h, w, 3), 90, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(3):
        cy, cx, r = rng.integers(8, h - 8), rng.integers(8, w - 8), rng.integers(4, 9)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (230, 20, 20)
    mask = (img[..., 0] > 160).astype(np.uint8)
    Image.fromarray(img).save(root / "images" / f"{stem}.png")
    Image.fromarray(mask, mode="L").save(root / "labels" / f"{stem}_P.png")


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seg")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    stems = [f"f{i:03d}" for i in range(12)]
    for stem in stems:
        _write_pair(root, stem, rng)
    (root / "codes.txt").write_text("\n".join(CODES) + "\n")
    (root / "valid.txt").write_text("\n".join(f"{s}.png" for s in stems[:3]) + "\n")
    return root


def _seg_source(root: Path):
    codes = read_codes(root / "codes.txt")
    return (SegmentationItemList.from_folder(root / "images").split_by_fname_file("../valid.txt")
            .label_from_func(lambda x: root / "labels" / f"{x.stem}_P{x.suffix}", classes=codes))


def test_segmentation_chain_splits_labels_and_exports(seg_root):
    src = _seg_source(seg_root)
    assert (len(src.train), len(src.valid)) == (9, 3)
    assert src.train_label.kind == "segmentation" and src.classes == CODES and src.train_label.void_code == 2
    data = src.transform(get_transforms(), size=(32, 48), tfm_y=True).databunch(bs=4).normalize(imagenet_stats)
    xb, yb = data.one_batch(train=False)
    assert xb.shape == (3, 3, 32, 48) and yb.shape == (3, 32, 48) and yb.dtype == torch.int64
    assert data.c == 3 and type(data.loss_func).__name__ == "CrossEntropyFlat" and data.loss_func.axis == 1
    meta = data.export_meta()
    assert meta["label_kind"] == "segmentation" and meta["classes"] == CODES and meta["void_code"] == 2


def test_mask_drawn_from_the_image_still_matches_after_augmentation(seg_root):
    torch.manual_seed(0)
    tfms = get_transforms(max_rotate=30, max_zoom=1.3, max_warp=0.3, max_lighting=0.0, p_affine=1.0)
    data = _seg_source(seg_root).transform(tfms, size=(40, 56), tfm_y=True).databunch(bs=9)
    xb, yb = data.one_batch(train=True)
    red = (xb[:, 0] > 0.62) & (xb[:, 1] < 0.35)  # the image's own red pixels, after the transform
    inside = yb != 2  # Void: brought in from outside the source
    assert (~inside).any(), "the strong rotation should bring in outside areas (filled with Void)"
    agree = ((yb == 1) == red)[inside].float().mean().item()
    assert agree > 0.97, agree
    # and the outside areas are black in the image (bilinear blends only their edge), so Void lands where
    # there is no source
    assert xb.permute(1, 0, 2, 3)[:, ~inside].mean() < 0.05


def test_bad_masks_name_the_file(seg_root, tmp_path):
    root = tmp_path / "bad"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    _write_pair(root, "a", np.random.default_rng(1))
    _write_pair(root, "b", np.random.default_rng(2))
    (root / "codes.txt").write_text("\n".join(CODES))
    (root / "valid.txt").write_text("a.png\n")
    # a mask value (7) past the 3 codes
    Image.fromarray(np.full((40, 56), 7, np.uint8), mode="L").save(root / "labels" / "b_P.png")
    data = _seg_source(root).transform(size=(32, 48), tfm_y=True).databunch(bs=1)
    with pytest.raises(DataError, match=r"b_P\.png.*class 7 but only 3 codes"):
        data.train_ds[0]
    # a mask whose size differs from its image
    Image.fromarray(np.zeros((20, 56), np.uint8), mode="L").save(root / "labels" / "b_P.png")
    with pytest.raises(DataError, match=r"b_P\.png.*20x56.*40x56"):
        data.train_ds[0]
    # a missing label file fails when labelling, naming the file and its image
    (root / "labels" / "b_P.png").unlink()
    with pytest.raises(DataError, match=r"b_P\.png.*label file for image b\.png not found"):
        _seg_source(root)


def test_codes_and_options_are_checked(seg_root, tmp_path):
    with pytest.raises(DataError, match="codes file lists no class names"):
        (tmp_path / "empty.txt").write_text("\n")
        read_codes(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="classes=codes"):
        SegmentationItemList.from_folder(seg_root / "images").split_by_rand_pct(0.2, seed=0).label_from_func(
            lambda x: seg_root / "labels" / f"{x.stem}_P.png")
    src = _seg_source(seg_root)
    with pytest.raises(ConfigError, match="must be transformed with their images"):
        src.transform(size=32, tfm_y=False)
    with pytest.raises(ConfigError, match=r"unexpected options \['remove_out'\]"):
        src.transform(size=32, remove_out=False)


# ---------------------------------------------------------------- points

def _dot_dataset(root: Path, n: int = 6, hw=(48, 64)) -> Path:
    """Images with one white dot at a known (row, col), stored in a CSV-free way: the name holds it."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        r, c = int(rng.integers(8, hw[0] - 8)), int(rng.integers(8, hw[1] - 8))
        img = np.zeros((*hw, 3), np.uint8)
        img[r - 1:r + 2, c - 1:c + 2] = 255
        Image.fromarray(img).save(root / "img" / f"{i:02d}_{r}_{c}.png")
    return root / "img"


def _dot_ctr(path: Path) -> torch.Tensor:
    _, r, c = Path(path).stem.split("_")
    return torch.tensor([[float(r), float(c)]])


def _dot_centres(xb: torch.Tensor) -> torch.Tensor:
    """(B, 2) brightness-weighted (row, col) of the dot in each image."""
    w = xb.mean(1).clamp(min=0)
    w = torch.where(w > 0.3, w, torch.zeros_like(w))
    rows = torch.arange(w.shape[1], dtype=torch.float32)[:, None]
    cols = torch.arange(w.shape[2], dtype=torch.float32)[None]
    total = w.sum((1, 2))
    return torch.stack([(w * rows).sum((1, 2)) / total, (w * cols).sum((1, 2)) / total], 1)


@pytest.mark.parametrize("k", [1, 2])  # left-right and up-down flips
def test_points_follow_a_flip_within_a_pixel(tmp_path, k):
    folder = _dot_dataset(tmp_path)
    src = PointsItemList.from_folder(folder).split_by_idx([0]).label_from_func(_dot_ctr)
    assert src.train_label.kind == "points" and src.train_label.c == 2
    data = src.transform(([RandomDihedral(ks=(k,))], []), tfm_y=True, size=(48, 64)).databunch(bs=5)
    xb, yb = data.one_batch(train=True)
    from raylessons.data.transforms import points_from_unit

    target = points_from_unit(yb[:, 0], (48, 64))
    assert (target - _dot_centres(xb)).abs().max() < 1.0
    flipped = torch.stack([_dot_ctr(p)[0] for p in src.train.items])
    # every sample was flipped: no target still sits at an original position (the dots are off-centre)
    assert not any(torch.allclose(t, f, atol=0.5) for t in target for f in flipped)


def test_points_are_scaled_to_unit_coordinates_on_a_squished_size(tmp_path):
    folder = _dot_dataset(tmp_path, hw=(48, 64))
    src = PointsItemList.from_folder(folder).split_by_idx([0]).label_from_func(_dot_ctr)
    data = src.transform(tfm_y=True, size=(24, 32)).databunch(bs=1)
    _, y = data.valid_ds[0]
    r, c = _dot_ctr(src.valid.items[0])[0].tolist()
    assert torch.allclose(y, torch.tensor([[(r + 0.5) / 24 - 1, (c + 0.5) / 32 - 1]]), atol=1e-5)


def test_points_pushed_out_are_dropped_as_nan_or_kept(tmp_path):
    folder = _dot_dataset(tmp_path, n=2)
    src = PointsItemList.from_folder(folder).split_by_idx([0]).label_from_func(
        lambda p: torch.tensor([[24.0, 32.0], [1.0, 1.0]]))  # the centre and a corner a 45° turn throws out
    from torchvision.transforms import v2

    rotate = ([v2.RandomRotation((45.0, 45.0))], [])
    _, y = src.transform(rotate, tfm_y=True, size=(48, 64)).databunch(bs=1).train_ds[0]
    assert y.shape == (2, 2) and torch.isfinite(y[0]).all() and torch.isnan(y[1]).all()
    _, kept = src.transform(rotate, tfm_y=True, size=(48, 64), remove_out=False).databunch(bs=1).train_ds[0]
    assert torch.isfinite(kept).all() and kept[1].abs().max() > 1 and torch.allclose(kept[0], y[0])
    # the loss skips the dropped point: equal to the MSE over the remaining coordinates only
    pred = torch.zeros(1, 4)
    assert MSELossFlat()(pred, y[None]).item() == pytest.approx((y[0] ** 2).mean().item())


def test_biwi_points_chain_holds_out_one_person(tmp_path):
    from raylessons.data.synth import synth

    root = synth("biwi", tmp_path / "biwi", persons=14, frames=2, seed=0)
    src = (PointsItemList.from_folder(root).split_by_valid_func(lambda o: o.parent.name == "13")
           .label_from_func(get_ctr))
    assert {Path(p).parent.name for p in src.valid.items} == {"13"}
    assert "13" not in {Path(p).parent.name for p in src.train.items}
    data = src.transform(get_transforms(), tfm_y=True, size=(30, 40)).databunch(bs=4)
    _, y = data.valid_ds[0]
    expected = get_ctr(src.valid.items[0])  # pixels of the 120x160 original
    assert torch.allclose(y, (expected + 0.5) / torch.tensor([60.0, 80.0]) - 1, atol=1e-5)
    assert data.c == 2 and data.export_meta()["n_points"] == 1


def test_bad_points_name_the_item(tmp_path):
    folder = _dot_dataset(tmp_path, n=2)
    items = PointsItemList.from_folder(folder).split_by_idx([0])
    with pytest.raises(DataError, match=r"\(K, 2\).*got shape \(3,\)"):
        items.label_from_func(lambda p: [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="finite"):
        items.label_from_func(lambda p: [[float("nan"), 1.0]])
    # a malformed pose file is reported by get_ctr with its path
    root = tmp_path / "biwi" / "01"
    root.mkdir(parents=True)
    Image.new("RGB", (16, 12)).save(root / "frame_00003_rgb.jpg")
    (root / "frame_00003_pose.txt").write_text("1 0 0\n0 1 0\n0 0 1\n\nnot numbers\n")
    (root / "rgb.cal").write_text("500 0 8\n0 500 6\n0 0 1\n")
    with pytest.raises(DataError, match=r"frame_00003_pose\.txt"):
        PointsItemList.from_folder(tmp_path / "biwi").split_none().label_from_func(get_ctr)


def test_show_batch_draws_masks_and_points(seg_root, tmp_path):
    data = _seg_source(seg_root).transform(size=(32, 48), tfm_y=True).databunch(bs=4)
    out = data.show_batch(rows=2, path=tmp_path / "seg.png")
    assert out.is_file() and out.stat().st_size > 1000
    folder = _dot_dataset(tmp_path / "pts")
    pts = PointsItemList.from_folder(folder).split_by_idx([0]).label_from_func(_dot_ctr)
    out = pts.transform(tfm_y=True, size=(48, 64)).databunch(bs=4).show_batch(rows=2, path=tmp_path / "p.png")
    assert out.is_file() and out.stat().st_size > 1000
