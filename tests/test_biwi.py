"""BIWI pose/calibration reading and the lesson's 3D -> pixel conversion."""
from pathlib import Path

import numpy as np
import pytest
import torch

from raylessons.data.biwi import convert_biwi, get_ctr, img2txt_name, read_cal, read_pose
from raylessons.errors import DataError

# folder 01's rgb.cal as the lesson prints it, in the real file's layout
# (K, distortion, extrinsic R, T, resolution; blocks separated by blank lines)
REAL_CAL = """517.679 0 320 
0 517.679 240.5 
0 0 1 

0 0 0 0 

0.999947 0.00432361 0.00929419 
-0.00446314 0.999877 0.0150443 
-0.009228 -0.015085 0.999844 

-24.0198 5.8896 -13.2308 

640 480 
"""
# 09/frame_00667_pose.txt: the centre is the lesson's worked example
POSE_00667 = """0.980639 0.109899 0.162077 
-0.11023 0.993882 -0.00697376 
-0.161851 -0.011027 0.986754 

187.332 40.3892 893.135 
"""


@pytest.fixture
def biwi_root(tmp_path: Path) -> Path:
    """A two-folder BIWI tree: 01 holds the real calibration, 09 the worked-example frame."""
    for folder in ("01", "09"):
        (tmp_path / folder).mkdir()
    (tmp_path / "01" / "rgb.cal").write_text(REAL_CAL)
    # folder 09's own K differs on purpose: the lesson ignores it and uses folder 01's
    (tmp_path / "09" / "rgb.cal").write_text(REAL_CAL.replace("517.679", "600"))
    (tmp_path / "09" / "frame_00667_pose.txt").write_text(POSE_00667)
    (tmp_path / "09" / "frame_00667_rgb.jpg").write_bytes(b"")
    return tmp_path


def test_read_cal_gives_the_real_intrinsics(biwi_root):
    cal = read_cal(biwi_root / "01" / "rgb.cal")
    assert cal.shape == (3, 3)
    np.testing.assert_array_equal(cal, [[517.679, 0, 320], [0, 517.679, 240.5], [0, 0, 1]])
    # the lesson's own reader agrees on this layout
    np.testing.assert_array_equal(cal, np.genfromtxt(biwi_root / "01" / "rgb.cal", skip_footer=6))


def test_read_pose_splits_rotation_and_centre(biwi_root):
    rotation, centre = read_pose(biwi_root / "09" / "frame_00667_pose.txt")
    assert rotation.shape == (3, 3) and centre.shape == (3,)
    np.testing.assert_array_equal(centre, [187.332, 40.3892, 893.135])
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
    # the lesson reads the centre with genfromtxt(skip_header=3)
    np.testing.assert_array_equal(centre, np.genfromtxt(biwi_root / "09" / "frame_00667_pose.txt", skip_header=3))


def test_lesson_worked_example_is_reproduced(biwi_root):
    cal = read_cal(biwi_root / "01" / "rgb.cal")
    row, col = convert_biwi(np.array([187.332, 40.3892, 893.135]), cal)
    assert round(row, 4) == 263.9104
    assert round(col, 4) == 428.5814


def test_get_ctr_uses_folder_01_calibration(biwi_root):
    image = biwi_root / "09" / "frame_00667_rgb.jpg"
    ctr = get_ctr(image)
    assert ctr.shape == (1, 2) and ctr.dtype == torch.float32
    torch.testing.assert_close(ctr, torch.tensor([[263.9104, 428.5814]]), atol=1e-4, rtol=0)
    own = get_ctr(image, cal=read_cal(biwi_root / "09" / "rgb.cal"))
    assert own[0, 1] > ctr[0, 1] + 10  # a different K moves the point, so the default really is folder 01's


def test_img2txt_name_follows_the_lesson():
    assert img2txt_name(Path("09/frame_00667_rgb.jpg")) == Path("09/frame_00667_pose.txt")
    with pytest.raises(DataError, match="_rgb.jpg"):
        img2txt_name(Path("09/frame_00667_depth.bin"))


@pytest.mark.parametrize("text, problem", [
    ("1 0 0 \n0 1 0 \n0 0 1 \n\n10 20 \n", "2 values"),
    ("1 0 0 \n0 1 0 \n0 0 1 \n\n10 20 abc \n", "not numbers"),
    ("1 0 0 \n0 1 0 \n\n10 20 900 \n", "3 numeric lines"),
    ("1 0 0 \n0 1 0 \n0 0 1 \n\n10 20 -900 \n", "depth"),
    ("1 0 0 \n0 1 0 \n0 0 1 \n\n10 20 nan \n", "non-finite"),
])
def test_malformed_pose_names_the_file(tmp_path, text, problem):
    path = tmp_path / "frame_00001_pose.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as info:
        read_pose(path)
    assert info.value.where == str(path)


@pytest.mark.parametrize("text, problem", [
    ("517.679 0 320 \n0 517.679 \n0 0 1 \n", "2 values"),
    ("517.679 0 320 \n0 x 240.5 \n0 0 1 \n", "not numbers"),
    ("517.679 0 320 \n", "1 numeric lines"),
    ("0 0 320 \n0 0 240.5 \n0 0 1 \n", "focal"),
])
def test_malformed_calibration_names_the_file(tmp_path, text, problem):
    path = tmp_path / "rgb.cal"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as info:
        read_cal(path)
    assert str(path) in str(info.value)


def test_missing_files_are_data_errors(biwi_root):
    with pytest.raises(DataError, match="cannot read") as info:
        read_pose(biwi_root / "09" / "frame_99999_pose.txt")
    assert "frame_99999_pose.txt" in str(info.value)
    (biwi_root / "01" / "rgb.cal").unlink()
    with pytest.raises(DataError, match="folder 01") as info:
        get_ctr(biwi_root / "09" / "frame_00667_rgb.jpg")
    assert "rgb.cal" in str(info.value)
