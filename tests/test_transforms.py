"""Joint image/mask/points augmentation: shapes, determinism, alignment, point maths and fastai semantics."""
from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as tnf
from torchvision.transforms import v2

from raylessons.data.transforms import (
    Pipeline, RandomDihedral, RandomZoom, get_transforms, imagenet_stats, points_from_unit, points_to_unit)
from raylessons.errors import ConfigError, DataError

# every augmentation on, each with p=1 (the strongest settings the lessons use, or stronger)
ALL_ON = dict(flip_vert=True, max_rotate=30., max_zoom=1.3, max_lighting=0.3, max_warp=0.3,
              p_affine=1., p_lighting=1.)
BILINEAR = v2.InterpolationMode.BILINEAR
NO_AUG = dict(do_flip=False, max_rotate=0., max_zoom=1., max_lighting=0., max_warp=0.)


def _dot_image(h: int, w: int, row: int, col: int, amp: int = 150) -> torch.Tensor:
    """uint8 (3, h, w) black image with a small bright blob centred on pixel (row, col)."""
    img = torch.zeros(3, h, w)
    rows, cols = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    img[:] = amp * torch.exp(-((rows - row) ** 2 + (cols - col) ** 2) / 1.5)
    return img.round().to(torch.uint8)


def _peak(img: torch.Tensor) -> torch.Tensor:
    flat = int(img.sum(0).flatten().argmax())
    return torch.tensor([flat // img.shape[-1], flat % img.shape[-1]], dtype=torch.float32)


def _region_image(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A Voronoi label map (6 classes) and an image whose channel ORDER encodes the class (survives lighting)."""
    gen = torch.Generator().manual_seed(seed)
    seeds = torch.rand(14, 2, generator=gen) * size
    labels = torch.randint(0, 6, (14,), generator=gen)
    rows, cols = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    dist = (rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2
    mask = labels[dist.argmin(-1)]  # (size, size)
    colours = torch.tensor(list(itertools.permutations((230, 140, 50))), dtype=torch.uint8)  # (6, 3)
    return colours[mask].permute(2, 0, 1).contiguous(), mask


def _decode(img: torch.Tensor) -> torch.Tensor:
    """Class id per pixel from the channel order of `img` (3, h, w)."""
    perms = {p: i for i, p in enumerate(itertools.permutations((0, 1, 2)))}
    order = img.argsort(dim=0, descending=True)  # (3, h, w): channel indices high -> low
    # class i has colour permutation p_i of (230, 140, 50); its channel ranking is the inverse permutation
    lut = torch.full((3, 3, 3), -1, dtype=torch.long)
    for p, i in perms.items():
        ranking = sorted(range(3), key=lambda c: -(230, 140, 50)[p[c]])
        lut[ranking[0], ranking[1], ranking[2]] = i
    return lut[order[0], order[1], order[2]]


def _interior(mask: torch.Tensor, fill: int) -> torch.Tensor:
    """Pixels that are not fill and whose 3x3 neighbourhood holds a single label."""
    m = mask.float()[None, None]
    hi = tnf.max_pool2d(m, 3, 1, 1)[0, 0]
    lo = -tnf.max_pool2d(-m, 3, 1, 1)[0, 0]
    return (hi == lo) & (mask != fill)


# ---------------------------------------------------------------- shapes, dtypes, determinism

@pytest.mark.parametrize("size,expected", [(64, (64, 64)), ((48, 80), (48, 80)), (None, (100, 150))])
@pytest.mark.parametrize("train", [True, False])
def test_shapes_and_dtypes(size, expected, train):
    torch.manual_seed(0)
    tfms = get_transforms()[0 if train else 1]
    img = torch.randint(0, 256, (3, 100, 150), dtype=torch.uint8)
    x, y = Pipeline(tfms, size, train)(img)
    assert x.shape == (3, *expected) and x.dtype == torch.float32 and y is None
    assert 0 <= x.min() and x.max() <= 1 and type(x) is torch.Tensor
    labels = torch.tensor([0., 1., 1.])  # multi-hot: not spatial, passes through untouched
    assert Pipeline(tfms, size, train)(img, labels)[1] is labels
    x, m = Pipeline(tfms, size, train, target_kind="mask")(img, torch.randint(0, 32, (100, 150), dtype=torch.uint8))
    assert m.shape == expected and m.dtype == torch.int64 and type(m) is torch.Tensor
    pts = torch.tensor([[50., 75.], [40, 70]])
    x, p = Pipeline(tfms, size, train, target_kind="points", remove_out=False)(img, pts)
    assert p.shape == (2, 2) and p.dtype == torch.float32 and type(p) is torch.Tensor


def test_valid_is_deterministic_resize_and_centre_crop_only():
    train, valid = get_transforms()
    assert valid == [] and len(train) == 6
    img = torch.randint(0, 256, (3, 128, 192), dtype=torch.uint8)
    pipe = Pipeline(valid, 64, train=False)
    a, b = pipe(img)[0], pipe(img)[0]
    assert torch.equal(a, b)
    # independent reference: shorter side 128 -> 64 (so 192 -> 96), then the centre 64 columns
    ref = tnf.interpolate(img[None].float() / 255, size=(64, 96), mode="bilinear", antialias=True)[0]
    assert (a - ref[:, :, 16:80]).abs().max() <= 1 / 255 + 1e-6
    squish = Pipeline(valid, (32, 48), train=False)(img)[0]
    ref = tnf.interpolate(img[None].float() / 255, size=(32, 48), mode="bilinear", antialias=True)[0]
    assert (squish - ref).abs().max() <= 1 / 255 + 1e-6


def test_train_varies_and_is_reproducible_under_a_seed():
    img, _ = _region_image(96, seed=1)
    pipe = Pipeline(get_transforms()[0], 64, train=True)
    torch.manual_seed(3)
    outs = [pipe(img)[0] for _ in range(6)]
    assert sum(not torch.equal(outs[0], o) for o in outs[1:]) >= 4
    torch.manual_seed(3)
    assert torch.equal(pipe(img)[0], outs[0])


def test_pipeline_pickles_for_dataloader_workers():
    img, mask = _region_image(64, seed=2)
    pipe = Pipeline(get_transforms(flip_vert=True)[0], 32, train=True, target_kind="mask")
    clone = pickle.loads(pickle.dumps(pipe))
    torch.manual_seed(5)
    a = pipe(img, mask)
    torch.manual_seed(5)
    b = clone(img, mask)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_each_random_transform_has_its_own_probability():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    rotate_only = get_transforms(**{**NO_AUG, "max_rotate": 10.}, p_affine=0.3)[0]
    light_only = get_transforms(**{**NO_AUG, "max_lighting": 0.2}, p_lighting=0.6)[0]
    plain = Pipeline([], None, train=True)(img)[0]
    for tfms, p_expected, n_tfms in [(rotate_only, 0.3, 1), (light_only, 1 - 0.4 ** 2, 2)]:
        assert len(tfms) == n_tfms
        pipe = Pipeline(tfms, None, train=True)
        changed = sum(not torch.allclose(pipe(img)[0], plain) for _ in range(200)) / 200
        assert abs(changed - p_expected) < 0.1, (changed, p_expected)


# ---------------------------------------------------------------- masks

def test_mask_stays_aligned_under_every_augmentation():
    torch.manual_seed(0)
    pipe = Pipeline(get_transforms(**ALL_ON)[0], 64, train=True, mask_fill=255, target_kind="mask")
    hits = total = mismatched_hits = 0
    saw_fill = 0
    previous = None
    for draw in range(12):
        img, mask = _region_image(128, seed=draw % 4)
        x, m = pipe(img, mask)
        assert set(m.unique().tolist()) <= set(range(6)) | {255}
        keep = _interior(m, fill=255)
        decoded = _decode(x)
        hits += int((decoded == m)[keep].sum())
        total += int(keep.sum())
        saw_fill += int((m == 255).any())
        if previous is not None:  # control: the same image against another draw's mask must NOT match
            keep2 = keep & _interior(previous, fill=255)
            mismatched_hits += float((decoded == previous)[keep2].float().mean())
        previous = m
    assert total > 12 * 64 * 64 * 0.4
    assert hits / total >= 0.97, hits / total
    assert mismatched_hits / 11 < 0.8
    assert saw_fill >= 6  # rotation/warp did push source-less areas in, and they were filled


def test_lighting_changes_the_image_but_never_the_mask():
    torch.manual_seed(0)
    img, mask = _region_image(96, seed=5)
    plain = Pipeline([], 64, train=False, target_kind="mask")(img, mask)
    light = get_transforms(**{**NO_AUG, "max_lighting": 0.5}, p_lighting=1.)[0]
    for _ in range(5):
        x, m = Pipeline(light, 64, train=False, target_kind="mask")(img, mask)
        assert torch.equal(m, plain[1])
        assert (x - plain[0]).abs().max() > 0.02


def test_mask_keeps_large_class_ids_and_rejects_negative_ones():
    img = torch.zeros(3, 32, 32, dtype=torch.uint8)
    mask = torch.full((32, 32), 300, dtype=torch.long)
    mask[:, :16] = 254
    pipe = Pipeline(get_transforms(**ALL_ON)[0], 16, train=True, mask_fill=999, target_kind="mask")
    assert set(pipe(img, mask)[1].unique().tolist()) <= {254, 300, 999}
    assert set(Pipeline([], 16, False, target_kind="mask")(img, mask)[1].unique().tolist()) == {254, 300}
    with pytest.raises(DataError, match=">= 0"):
        pipe(img, mask - 1000)


def test_mask_fill_marks_only_out_of_source_pixels():
    img = torch.full((3, 64, 64), 200, dtype=torch.uint8)
    mask = torch.zeros(64, 64, dtype=torch.long)  # class 0 everywhere: only the fill can differ
    x, m = Pipeline([v2.RandomRotation((45, 45))], None, train=True, mask_fill=7, target_kind="mask")(img, mask)
    assert m[32, 32] == 0 and m[0, 0] == 7 and m[63, 63] == 7
    assert x[:, 0, 0].max() == 0  # the image's out-of-source corner is black
    assert set(m.unique().tolist()) == {0, 7}


# ---------------------------------------------------------------- points

def _check_dot(pipe: Pipeline, img: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    x, p = pipe(img, point[None])
    assert p.shape == (1, 2)
    assert (p[0] - _peak(x)).abs().max() <= 1.0, (p[0], _peak(x))
    return p[0]


@pytest.mark.parametrize("k", range(8))
@pytest.mark.parametrize("hw", [(48, 48), (40, 56)])
def test_points_follow_each_dihedral_element(k, hw):
    h, w = hw
    img, point = _dot_image(h, w, 11, 17), torch.tensor([11., 17.])
    p = _check_dot(Pipeline([RandomDihedral(ks=(k,))], None, True, target_kind="points"), img, point)
    if h == w:  # exact answer: flips then transpose, in pixel-index coordinates
        row, col = (11., 17.)
        col = w - 1 - col if k & 1 else col
        row = h - 1 - row if k & 2 else row
        expected = torch.tensor([col, row] if k & 4 else [row, col])
        assert torch.allclose(p, expected, atol=1e-4)


@pytest.mark.parametrize("name,tfm", [
    ("hflip", RandomDihedral(lr_only=True, ks=(1,))),
    ("rotate 30", v2.RandomRotation((30., 30.), interpolation=BILINEAR)),
    ("rotate -17", v2.RandomRotation((-17., -17.), interpolation=BILINEAR)),
    ("zoom", RandomZoom(1.5)),
    ("warp", v2.RandomPerspective(0.4, p=1.)),
])
def test_points_follow_geometric_transforms(name, tfm):
    torch.manual_seed(0)
    img, point = _dot_image(64, 64, 26, 38), torch.tensor([26., 38.])
    for _ in range(4):
        _check_dot(Pipeline([tfm], None, True, target_kind="points"), img, point)


@pytest.mark.parametrize("degrees", [30., -17., 90.])
def test_rotation_turns_points_about_the_image_centre(degrees):
    h, w = 48, 64
    pts = torch.tensor([[5., 9.], [30., 50.], [23.5, 31.5]])  # the last is the exact centre in pixel-index terms
    rotate = Pipeline([v2.RandomRotation((degrees, degrees), interpolation=BILINEAR)], None, True,
                      target_kind="points", remove_out=False)
    _, out = rotate(_dot_image(h, w, 5, 9), pts)
    # positive angles turn counter-clockwise on screen; rows grow downwards
    theta = torch.tensor(degrees * torch.pi / 180)
    d_row, d_col = pts[:, 0] - (h - 1) / 2, pts[:, 1] - (w - 1) / 2
    expected = torch.stack([d_row * torch.cos(theta) - d_col * torch.sin(theta) + (h - 1) / 2,
                            d_row * torch.sin(theta) + d_col * torch.cos(theta) + (w - 1) / 2], dim=1)
    assert torch.allclose(out, expected, atol=1e-3), (out, expected)


def test_points_follow_the_full_train_pipeline_with_resize_and_crop():
    torch.manual_seed(1)
    img, point = _dot_image(96, 128, 50, 61), torch.tensor([50., 61.])
    for size in (64, (48, 64)):
        pipe = Pipeline(get_transforms(**ALL_ON)[0], size, True, target_kind="points")
        for _ in range(8):
            _check_dot(pipe, img, point)
    # a known answer for the resize alone: 96x128 -> 48x64 halves the pixel-corner coordinates
    _, p = Pipeline([], (48, 64), False, target_kind="points")(img, point[None])
    assert torch.allclose(p[0], (point + 0.5) / 2 - 0.5)


def test_remove_out_drops_or_keeps_points_pushed_outside():
    img = _dot_image(64, 64, 32, 32)
    pts = torch.tensor([[32., 32.], [1., 1.]])  # centre-ish, and a corner that a 45° turn throws out
    rotate = [v2.RandomRotation((45., 45.), interpolation=BILINEAR)]
    _, kept = Pipeline(rotate, None, True, target_kind="points", remove_out=True)(img, pts)
    assert kept.shape == (1, 2) and (kept[0] - torch.tensor([32., 32.])).abs().max() < 1.0
    _, both = Pipeline(rotate, None, True, target_kind="points", remove_out=False)(img, pts)
    assert both.shape == (2, 2)
    outside = (both[1] < -0.5) | (both[1] > 63.5)
    assert outside.any(), both[1]
    assert torch.equal(both[0], kept[0])
    _, none = Pipeline(rotate, None, True, target_kind="points")(img, torch.zeros(0, 2))
    assert none.shape == (0, 2)


def test_unit_coordinates_round_trip_and_corner_convention():
    size = (120, 160)
    corners = torch.tensor([[-0.5, -0.5], [119.5, 159.5], [59.5, 79.5]])
    assert torch.allclose(points_to_unit(corners, size), torch.tensor([[-1., -1.], [1., 1.], [0., 0.]]))
    pts = torch.rand(50, 2) * torch.tensor([140., 190.]) - 10  # includes points outside the image
    assert torch.allclose(points_from_unit(points_to_unit(pts, size), size), pts, atol=1e-4)
    # the pixel grid is spaced 2/size in unit coordinates
    step = points_to_unit(torch.tensor([[1., 1.]]), size) - points_to_unit(torch.tensor([[0., 0.]]), size)
    assert torch.allclose(step, torch.tensor([[2 / 120, 2 / 160]]))


# ---------------------------------------------------------------- fastai semantics and errors

def test_dihedral_draws_all_eight_symmetries_and_flip_lr_two():
    torch.manual_seed(0)
    img = torch.arange(48, dtype=torch.uint8).reshape(3, 4, 4)
    for flip_vert, n_expected in [(True, 8), (False, 2)]:
        tfms = get_transforms(**{**NO_AUG, "do_flip": True}, flip_vert=flip_vert)[0]
        assert len(tfms) == 1
        pipe = Pipeline(tfms, None, train=True)
        seen: dict[bytes, int] = {}
        for _ in range(240):
            key = (pipe(img)[0] * 255).round().to(torch.uint8).numpy().tobytes()
            seen[key] = seen.get(key, 0) + 1
        assert len(seen) == n_expected
        assert min(seen.values()) > 240 / n_expected / 2  # roughly uniform


def test_get_transforms_follows_fastai_defaults():
    train, valid = get_transforms()
    assert isinstance(train[0], RandomDihedral) and train[0].ks == (0, 1)
    assert isinstance(train[1], v2.RandomPerspective) and train[1].p == 0.75 and train[1].distortion_scale == 0.2
    assert [t.p for t in train[2:]] == [0.75] * 4
    planet, _ = get_transforms(flip_vert=True, max_lighting=0.1, max_zoom=1.05, max_warp=0.)
    assert len(planet[0].ks) == 8 and not any(isinstance(t, v2.RandomPerspective) for t in planet)
    extra = v2.GaussianBlur(3)
    assert get_transforms(xtra_tfms=[extra])[0][-1] is extra
    assert imagenet_stats == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize("kwargs", [dict(max_zoom=0.9), dict(max_lighting=1.0), dict(p_affine=1.5),
                                    dict(max_warp=-0.1), dict(max_rotate=-5)])
def test_bad_options_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        get_transforms(**kwargs)


@pytest.mark.parametrize("size", [0, (64,), (64, 0), "64", 64.0])
def test_bad_size_raises_config_error(size):
    with pytest.raises(ConfigError, match="size"):
        Pipeline([], size, train=True)


def test_bad_inputs_raise_data_or_config_errors():
    img = torch.zeros(3, 32, 32, dtype=torch.uint8)
    with pytest.raises(DataError, match="image"):
        Pipeline([], None, True)(torch.zeros(32, 32, dtype=torch.uint8))
    with pytest.raises(DataError, match="mask"):
        Pipeline([], None, True, target_kind="mask")(img, torch.zeros(16, 16, dtype=torch.long))
    with pytest.raises(DataError, match="points"):
        Pipeline([], None, True, target_kind="points")(img, torch.zeros(3))
    with pytest.raises(ConfigError, match="target_kind"):
        Pipeline([], None, True)(img, torch.zeros(32, 32, dtype=torch.long))
    with pytest.raises(ConfigError, match="target_kind"):
        Pipeline([], None, True, target_kind="box")


def test_the_lessons_numpy_size_is_taken():
    # lesson3-camvid: `src_size = np.array(mask.shape[1:])`, `size = src_size // 2`
    img = torch.zeros(3, 40, 64, dtype=torch.uint8)
    for size in (np.array([40, 64]) // 2, tuple(np.array([40, 64]) // 2), np.int64(16)):
        x, _ = Pipeline([], size, train=False)(img)
        assert tuple(x.shape[-2:]) == ((20, 32) if np.ndim(size) else (16, 16))


def test_a_numpy_size_is_stored_as_ints_by_the_chain(tmp_path):
    import json

    from raylessons.data.synth import synth
    from raylessons.tasks import camvid

    src = camvid.build_source(camvid.Config(data=str(synth("camvid", tmp_path, n=6, size=(32, 48), seed=0))))
    data = src.transform(size=np.array([32, 48]) // 2, tfm_y=True).databunch(bs=2)
    assert data.size == (16, 24) and json.dumps(data.export_meta()["size"]) == "[16, 24]"  # an export can hold it
    with pytest.raises(ConfigError, match="size"):
        src.transform(size=(16, 0))  # at transform, not later at databunch
