"""BIWI head pose: reading `frame_*_pose.txt` and `rgb.cal`, and the lesson's 3D -> pixel conversion."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from raylessons.errors import DataError

if TYPE_CHECKING:
    import torch

__all__ = ["read_cal", "read_pose", "convert_biwi", "get_ctr", "img2txt_name", "CAL_FOLDER"]

# The lesson projects every frame with folder 01's intrinsics (the 24 folders share one K).
CAL_FOLDER = "01"


def _numeric_rows(path: Path, what: str) -> list[list[float]]:
    """Non-blank lines of `path` split into floats; DataError naming the file and line otherwise."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise DataError(f"cannot read {what}: {error.strerror or error}", where=path) from error
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # the real files separate blocks with blank lines
        try:
            rows.append([float(value) for value in line.split()])
        except ValueError:
            raise DataError(f"{what} line {number} is not numbers: {line.strip()!r}", where=path) from None
    return rows


def _check_row(path: Path, what: str, row: list[float], index: int, width: int = 3) -> None:
    if len(row) != width:
        raise DataError(f"{what} row {index + 1} has {len(row)} values, expected {width}", where=path)
    if not np.all(np.isfinite(row)):
        raise DataError(f"{what} row {index + 1} has a non-finite value: {row}", where=path)


def read_cal(path: Path) -> np.ndarray:
    """The 3x3 intrinsic matrix K: the first three non-blank lines of a BIWI `rgb.cal`."""
    path = Path(path)
    rows = _numeric_rows(path, "calibration")
    # the lesson's genfromtxt(skip_footer=6) also keeps just these 3 rows; the rest is
    # distortion, extrinsic rotation/translation and the resolution, which the lesson ignores
    if len(rows) < 3:
        raise DataError(f"calibration has {len(rows)} numeric lines, expected at least 3 (K)", where=path)
    for index, row in enumerate(rows[:3]):
        _check_row(path, "calibration K", row, index)
    cal = np.array(rows[:3], dtype=np.float64)
    if cal[0, 0] <= 0 or cal[1, 1] <= 0:
        raise DataError(f"calibration K has a non-positive focal length: {cal[0, 0]}, {cal[1, 1]}", where=path)
    return cal


def read_pose(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rotation 3x3, head centre (3,) in mm) from a BIWI `frame_XXXXX_pose.txt`."""
    path = Path(path)
    rows = _numeric_rows(path, "pose")
    if len(rows) != 4:
        raise DataError(f"pose has {len(rows)} numeric lines, expected 4 (3 rotation rows + centre)", where=path)
    for index, row in enumerate(rows):
        _check_row(path, "pose", row, index)
    rotation = np.array(rows[:3], dtype=np.float64)
    centre = np.array(rows[3], dtype=np.float64)
    if centre[2] <= 0:
        raise DataError(f"pose centre has depth Z={centre[2]} <= 0 (must be in front of the camera)", where=path)
    return rotation, centre


def convert_biwi(centre: np.ndarray, cal: np.ndarray) -> tuple[float, float]:
    """Project a head centre (X, Y, Z) mm through K to pixels, returned (row, col) as the lesson does."""
    x, y, z = (float(v) for v in np.asarray(centre, dtype=np.float64).reshape(3))
    if z <= 0:
        raise DataError(f"head centre depth Z={z} <= 0 cannot be projected")
    col = x * cal[0][0] / z + cal[0][2]
    row = y * cal[1][1] / z + cal[1][2]
    return row, col


def img2txt_name(image_path: Path) -> Path:
    """`.../frame_00003_rgb.jpg` -> `.../frame_00003_pose.txt` (the lesson's name mapping)."""
    image_path = Path(image_path)
    if not image_path.name.endswith("_rgb.jpg"):
        raise DataError("BIWI image names end with '_rgb.jpg'", where=image_path)
    return image_path.with_name(image_path.name[: -len("rgb.jpg")] + "pose.txt")


@functools.lru_cache(maxsize=16)
def _cached_cal(path: str, mtime_ns: int) -> np.ndarray:
    # keyed on mtime so a regenerated dataset at the same path is re-read
    return read_cal(Path(path))


def _folder_cal(image_path: Path) -> np.ndarray:
    cal_path = image_path.parent.parent / CAL_FOLDER / "rgb.cal"
    try:
        mtime = cal_path.stat().st_mtime_ns
    except OSError:
        raise DataError(f"calibration of folder {CAL_FOLDER} is missing (needed for {image_path.name})",
                        where=cal_path) from None
    return _cached_cal(str(cal_path), mtime).copy()


def get_ctr(image_path: Path, cal: np.ndarray | None = None) -> torch.Tensor:
    """Head centre of an image as a (1, 2) float tensor (row, col) in pixels of the original image."""
    import torch  # here, so that the generator and the readers start without loading torch

    image_path = Path(image_path)
    cal = _folder_cal(image_path) if cal is None else np.asarray(cal, dtype=np.float64)
    _, centre = read_pose(img2txt_name(image_path))
    row, col = convert_biwi(centre, cal)
    return torch.tensor([[row, col]], dtype=torch.float32)
