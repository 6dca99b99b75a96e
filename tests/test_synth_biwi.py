"""The BIWI look-alike: real layout and formats, and labels that land on the drawn head."""
import argparse
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raylessons.data.biwi import get_ctr, img2txt_name, read_cal, read_pose
from raylessons.data.synth import biwi as synth_biwi

SIZE = (120, 160)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return synth_biwi.synth(tmp_path_factory.mktemp("biwi"), persons=24, frames=3, size=SIZE, seed=0)


def _images(root: Path) -> list[Path]:
    return sorted(root.glob("*/*_rgb.jpg"))


def _flood(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Pixels of `mask` 4-connected to the `seeds` mask (flood fill by repeated dilation)."""
    comp = seeds & mask
    while True:
        grown = comp.copy()
        grown[1:] |= comp[:-1]
        grown[:-1] |= comp[1:]
        grown[:, 1:] |= comp[:, :-1]
        grown[:, :-1] |= comp[:, 1:]
        grown &= mask
        if (grown == comp).all():
            return comp
        comp = grown


def _face(image: np.ndarray, row: float, col: float) -> tuple[np.ndarray, np.ndarray]:
    """(colour at the labelled pixel, the same-coloured region around it with its holes filled)."""
    seed = (int(round(row)), int(round(col)))
    colour = image[max(seed[0] - 1, 0): seed[0] + 2, max(seed[1] - 1, 0): seed[1] + 2].reshape(-1, 3).mean(0)
    close = np.linalg.norm(image.astype(float) - colour, axis=2) < 45
    seeds = np.zeros_like(close)
    seeds[seed] = True
    face = _flood(close, seeds)
    border = np.ones_like(close)
    border[1:-1, 1:-1] = False
    outside = _flood(~face, border)  # eyes and mouth are holes inside the face, not outside it
    return colour, ~outside


def test_layout_matches_the_real_dataset(root):
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == [f"{i:02d}" for i in range(1, 25)]
    assert sorted(p.name for p in root.glob("*.obj")) == [f"{i:02d}.obj" for i in range(1, 25)]
    for folder in folders:
        names = sorted(p.name for p in (root / folder).iterdir())
        frames = [n for n in names if n.endswith("_rgb.jpg")]
        assert len(frames) == 3 and {"rgb.cal", "depth.cal"} <= set(names)
        assert all(re.fullmatch(r"frame_\d{5}_rgb\.jpg", n) for n in frames)
        assert all((root / folder / img2txt_name(Path(n))).exists() for n in frames)
        assert len(names) == 2 + 2 * len(frames)
    assert _images(root)[0].name == "frame_00003_rgb.jpg"  # folder 01 starts at 00003
    numbers = [int(p.name[6:11]) for p in sorted((root / "01").glob("*_rgb.jpg"))]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    image = Image.open(_images(root)[0])
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (SIZE[1], SIZE[0])


def test_poses_parse_and_are_rotations_at_head_distance(root):
    for image in _images(root):
        pose = img2txt_name(image)
        lines = pose.read_text().split("\n")
        assert lines[3] == "" and all(line.endswith(" ") for line in lines[:3] + lines[4:5])
        rotation, centre = read_pose(pose)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-5)
        assert 650 < centre[2] < 1150


def test_every_folder_has_the_same_scaled_intrinsics(root):
    k = read_cal(root / "01" / "rgb.cal")
    np.testing.assert_allclose(k, [[517.679 / 4, 0, 80], [0, 517.679 / 4, 60.125], [0, 0, 1]], rtol=1e-5)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        np.testing.assert_array_equal(read_cal(folder / "rgb.cal"), k)
        # the lesson's reader sees the same K in the generated layout
        np.testing.assert_array_equal(np.genfromtxt(folder / "rgb.cal", skip_footer=6), k)
        assert not np.array_equal(read_cal(folder / "depth.cal"), k)


def test_real_size_gives_the_real_calibration(tmp_path):
    out = synth_biwi.synth(tmp_path, persons=1, frames=1, size=(480, 640))
    np.testing.assert_array_equal(read_cal(out / "01" / "rgb.cal"), synth_biwi.REAL_K)


def test_get_ctr_lands_on_the_drawn_head_centre(root):
    h, w = SIZE
    for image_path in _images(root):
        image = np.asarray(Image.open(image_path))
        row, col = get_ctr(image_path)[0].tolist()
        assert 0.25 * h < row < 0.75 * h and 0.25 * w < col < 0.75 * w  # well inside the frame
        colour, face = _face(image, row, col)
        rows, cols = np.nonzero(face)
        # the face is a filled ellipse around the head centre: its centroid sits there (JPEG edges
        # blur by under a pixel; 1728 generated frames measured at most 0.66 px)
        assert abs(rows.mean() - row) <= 0.75 and abs(cols.mean() - col) <= 0.75, image_path
        assert abs((rows.min() + rows.max()) / 2 - row) <= 1.5, image_path
        assert abs((cols.min() + cols.max()) / 2 - col) <= 1.5, image_path
        assert 8 <= cols.max() - cols.min() <= 40 and face.sum() > 100
        # the face stands out from its surroundings: it does not leak to the image border
        assert rows.min() > 0 and cols.min() > 0 and rows.max() < h - 1 and cols.max() < w - 1


def test_people_look_different_and_re_recordings_alike(root):
    def skin(folder: str) -> np.ndarray:
        image_path = sorted((root / folder).glob("*_rgb.jpg"))[0]
        row, col = get_ctr(image_path)[0].tolist()
        return _face(np.asarray(Image.open(image_path)), row, col)[0]

    tones = {folder: skin(folder) for folder in ("02", "03", "05", "07", "13", "15", "18", "21", "22")}
    for again, first in (("15", "03"), ("18", "05"), ("21", "02"), ("22", "07")):
        assert np.linalg.norm(tones[again] - tones[first]) < 15
    distinct = {tuple(np.round(tones[f] / 8)) for f in ("02", "03", "05", "07", "13")}
    assert len(distinct) >= 4
    # backgrounds differ per sequence, even for the same person
    corner = lambda f: np.asarray(Image.open(sorted((root / f).glob("*_rgb.jpg"))[0]))[:8, :8].mean((0, 1))
    assert np.linalg.norm(corner("15") - corner("03")) > 5


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    def digest(out: Path) -> str:
        files = sorted(p for p in out.rglob("*") if p.is_file())
        return hashlib.md5(b"".join(p.relative_to(out).as_posix().encode() + p.read_bytes() for p in files)).hexdigest()

    a = synth_biwi.synth(tmp_path / "a", persons=2, frames=2, seed=3)
    b = synth_biwi.synth(tmp_path / "b", persons=2, frames=2, seed=3)
    c = synth_biwi.synth(tmp_path / "c", persons=2, frames=2, seed=4)
    assert digest(a) == digest(b) != digest(c)


def test_cli_arguments_map_to_synth_keywords(tmp_path):
    parser = argparse.ArgumentParser()
    synth_biwi.add_cli_arguments(parser)
    args = vars(parser.parse_args(["--persons", "2", "--frames", "1", "--width", "96", "--height", "72"]))
    assert args == {"persons": 2, "frames": 1, "size": (72, 96), "seed": 0}
    out = synth_biwi.synth(tmp_path, **args)
    assert Image.open(next(out.glob("02/*_rgb.jpg"))).size == (96, 72)
    assert vars(parser.parse_args([]))["size"] == (120, 160)


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="persons"):
        synth_biwi.synth(tmp_path, persons=25)
    with pytest.raises(ValueError, match="size"):
        synth_biwi.synth(tmp_path, size=(16, 16))
