"""A BIWI head-pose look-alike: 24 person folders of JPEG frames, pose files and calibrations.

Each frame shows one head (a skin ellipse with hair, eyes and a mouth, in front of a
per-sequence room) drawn exactly where the lesson's `get_ctr` projects the written
pose through folder 01's `rgb.cal`. As in the real data, every folder holds the same
intrinsics K (scaled from 640x480 to the chosen size), sequences 15/18/21/22 re-record
subjects of 03/05/02/07, and frame numbers start at 00003 and skip some numbers.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

from raylessons.data.biwi import convert_biwi

from . import add_size_arguments

__all__ = ["synth", "add_cli_arguments", "REAL_SIZE", "REAL_K", "scaled_k", "SUBJECTS"]

REAL_SIZE = (480, 640)  # (H, W) of the real frames
REAL_K = np.array([[517.679, 0.0, 320.0], [0.0, 517.679, 240.5], [0.0, 0.0, 1.0]])
_DEPTH_K = np.array([[575.816, 0.0, 320.0], [0.0, 575.816, 240.0], [0.0, 0.0, 1.0]])
# sequence -> subject, as in the BIWI README (some people were recorded twice)
SUBJECTS = {
    "01": "F01", "02": "F02", "03": "F03", "04": "F04", "05": "F05", "06": "F06",
    "07": "M01", "08": "M02", "09": "M03", "10": "M04", "11": "M05", "12": "M06",
    "13": "M07", "14": "M08", "15": "F03", "16": "M09", "17": "M10", "18": "F05",
    "19": "M11", "20": "M12", "21": "F02", "22": "M01", "23": "M13", "24": "M14",
}
_SKIN_TONES = np.array([[241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36],
                        [255, 219, 172], [172, 118, 78], [234, 192, 160], [110, 70, 45]], dtype=float)
_MIN_CONTRAST = 90.0  # RGB distance kept between skin and anything drawn next to it
_FLICKER = (0.94, 1.06)  # per-frame room brightness range


def _g6(value: float) -> float:
    """The value as the files store it (6 significant digits), so drawing and reading agree."""
    return float(f"{value:.6g}")


def _row(values) -> str:
    # the real files separate values with spaces and end every line with one
    return " ".join(f"{v:.6g}" for v in values) + " \n"


def scaled_k(size: tuple[int, int]) -> np.ndarray:
    """The real RGB intrinsics scaled from 640x480 to `size` (H, W), rounded as written to rgb.cal."""
    sy, sx = size[0] / REAL_SIZE[0], size[1] / REAL_SIZE[1]
    k = REAL_K * np.array([[sx], [sy], [1.0]])
    return np.vectorize(_g6)(k)


def _cal_text(k: np.ndarray, rotation: np.ndarray, translation: np.ndarray, size: tuple[int, int]) -> str:
    # K, distortion, extrinsic R, T, resolution: 9 numeric lines, so the lesson's
    # genfromtxt(skip_footer=6) keeps exactly K
    blocks = ["".join(_row(r) for r in k), _row([0, 0, 0, 0]), "".join(_row(r) for r in rotation),
              _row(translation), _row([size[1], size[0]])]
    return "\n".join(blocks)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rz(roll) @ Ry(yaw) @ Rx(pitch), angles in radians."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _far_colour(rng: np.random.Generator, avoid: list[np.ndarray], low: int = 10, high: int = 245,
                blend_with: np.ndarray | None = None) -> np.ndarray:
    """A random colour at least _MIN_CONTRAST from every colour in `avoid`, under the lighting flicker.

    With `blend_with`, every colour of the gradient between the two must keep that contrast too.
    """
    for _ in range(500):
        colour = rng.uniform(low, high, 3)
        shades = [colour]
        if blend_with is not None:
            shades = [colour * t + blend_with * (1 - t) for t in np.linspace(0, 1, 11)]
        if all(np.linalg.norm(shade * light - a) >= _MIN_CONTRAST
               for shade in shades for light in _FLICKER for a in avoid):
            return colour
    raise RuntimeError("could not find a contrasting colour")  # cannot happen with 2-3 colours to avoid


def _subject_look(subject: str, seed: int) -> dict:
    """Appearance of one subject; the same subject looks the same in each of its sequences."""
    rng = np.random.default_rng([seed, int(subject[1:]), ord(subject[0])])
    skin = np.clip(_SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.uniform(-12, 12, 3), 0, 255)
    hair = _far_colour(rng, [skin], 0, 120) if rng.random() < 0.8 else _far_colour(rng, [skin])
    shirt = _far_colour(rng, [skin])
    return {"skin": skin, "hair": hair, "shirt": shirt, "eyes": np.array([30.0, 25.0, 20.0]),
            "half_mm": (rng.uniform(70, 88), rng.uniform(95, 115)),  # head half width/height in mm
            "hair_volume": rng.uniform(1.05, 1.2)}


def _room(rng: np.random.Generator, size: tuple[int, int], look: dict) -> np.ndarray:
    """A per-sequence background: a vertical gradient with a few furniture-like boxes."""
    h, w = size
    avoid = [look["skin"]]
    top = _far_colour(rng, avoid)
    bottom = _far_colour(rng, avoid, blend_with=top)
    t = np.linspace(0, 1, h)[:, None, None]
    room = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()
    for _ in range(rng.integers(2, 6)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = y0 + rng.integers(h // 8, h // 2), x0 + rng.integers(w // 10, w // 3)
        room[y0:y1, x0:x1] = _far_colour(rng, avoid)
    return room


def _ellipse(yy, xx, centre, half_axes, angle: float) -> np.ndarray:
    """Boolean mask of a rotated ellipse; pixel (i, j) sits at coordinate (i, j)."""
    dy, dx = yy - centre[0], xx - centre[1]
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    return (u / half_axes[0]) ** 2 + (v / half_axes[1]) ** 2 <= 1.0


def _head_point(centre, a: float, b: float, angle: float, u: float, v: float) -> tuple[float, float]:
    """Pixel (row, col) of head-frame offset (u along width, v down) from the head centre."""
    return (centre[0] + u * a * math.sin(angle) + v * b * math.cos(angle),
            centre[1] + u * a * math.cos(angle) - v * b * math.sin(angle))


def _draw_frame(room, look, k, centre_mm, angles, rng) -> np.ndarray:
    """Render one frame: room, shirt, hair, face, eyes and mouth around the projected centre."""
    h, w, _ = room.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yaw, pitch, roll = angles
    centre = convert_biwi(centre_mm, k)  # (row, col), the lesson's formula
    z = centre_mm[2]
    a, b = look["half_mm"][0] * k[0][0] / z, look["half_mm"][1] * k[1][1] / z
    img = room * rng.uniform(*_FLICKER)
    shirt_at = _head_point(centre, a, b, 0.0, 0.0, 1.9)
    img[_ellipse(yy, xx, shirt_at, (2.6 * a, 1.0 * b), 0.0)] = look["shirt"]
    hair_at = _head_point(centre, a, b, roll, 0.0, -0.18)
    img[_ellipse(yy, xx, hair_at, (a * look["hair_volume"], b * 1.08), roll)] = look["hair"]
    img[_ellipse(yy, xx, centre, (a, b), roll)] = look["skin"]
    # features stay inside the face and off its centre pixel, so the face outline is intact
    shift = 0.25 * math.sin(yaw)
    eye_v = -0.36 + 0.12 * math.sin(pitch)
    eye_r = max(0.12 * a, 0.9)
    for side in (-0.36, 0.36):
        eye_at = _head_point(centre, a, b, roll, side + shift, eye_v)
        img[_ellipse(yy, xx, eye_at, (eye_r, eye_r), 0.0)] = look["eyes"]
    mouth_at = _head_point(centre, a, b, roll, shift, 0.5 + 0.1 * math.sin(pitch))
    img[_ellipse(yy, xx, mouth_at, (max(0.25 * a, 1.2), max(0.07 * b, 0.7)), roll)] = (150, 50, 60)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _trajectory(rng: np.random.Generator, frames: int, size: tuple[int, int], k: np.ndarray):
    """Smooth head centres (mm, as stored) and angles for one sequence, kept well inside the frame."""
    h, w = size
    t = np.linspace(0, 2 * math.pi, frames, endpoint=False) + rng.uniform(0, 2 * math.pi)
    phase = rng.uniform(0, 2 * math.pi, 5)
    z = rng.uniform(800, 1000) + 80 * np.sin(t * 0.7 + phase[0])
    row = h * (0.5 + rng.uniform(-0.06, 0.06) + 0.1 * np.sin(t * 1.3 + phase[1]))
    col = w * (0.5 + rng.uniform(-0.08, 0.08) + 0.14 * np.sin(t + phase[2]))
    centres = []
    for r, c, d in zip(row, col, z):
        # back-project the wanted pixel, then round as the file stores it
        x, y = (c - k[0][2]) * d / k[0][0], (r - k[1][2]) * d / k[1][1]
        centres.append(np.array([_g6(x), _g6(y), _g6(d)]))
    yaw = np.radians(60) * np.sin(t + phase[3])
    pitch = np.radians(35) * np.sin(t * 1.7 + phase[4])
    roll = np.radians(12) * np.sin(t * 0.9 + phase[0])
    return centres, list(zip(yaw, pitch, roll))


def _obj_text(look: dict) -> str:
    """A tiny head mesh (an octahedron with the subject's half sizes) standing in for NN.obj."""
    a, b = look["half_mm"]
    verts = [(a, 0, 0), (-a, 0, 0), (0, b, 0), (0, -b, 0), (0, 0, a), (0, 0, -a)]
    faces = [(1, 3, 5), (3, 2, 5), (2, 4, 5), (4, 1, 5), (3, 1, 6), (2, 3, 6), (4, 2, 6), (1, 4, 6)]
    return ("".join(f"v {x:g} {y:g} {z:g}\n" for x, y, z in verts)
            + "".join(f"f {i} {j} {m}\n" for i, j, m in faces))


def _write_sequence(folder: Path, look: dict, k: np.ndarray, frames: int, size, rng) -> None:
    """One person folder: rgb.cal, depth.cal and the frames with their pose files."""
    folder.mkdir(parents=True, exist_ok=True)
    extrinsic = _rotation(*rng.uniform(-0.015, 0.015, 3))
    (folder / "rgb.cal").write_text(_cal_text(k, extrinsic, rng.uniform(-25, 25, 3), size))
    depth_k = _DEPTH_K * np.array([[size[1] / REAL_SIZE[1]], [size[0] / REAL_SIZE[0]], [1.0]])
    (folder / "depth.cal").write_text(_cal_text(depth_k, np.eye(3), np.zeros(3), size))
    room = _room(rng, size, look)
    centres, angles = _trajectory(rng, frames, size, k)
    number = 3  # the real folder 01 starts at frame 00003 and skips numbers
    for centre, angle in zip(centres, angles):
        stem = folder / f"frame_{number:05d}"
        rotation = _rotation(*angle)
        pose = "".join(_row(r) for r in rotation) + "\n" + _row(centre)
        Path(f"{stem}_pose.txt").write_text(pose)
        frame = _draw_frame(room, look, k, centre, angle, rng)
        Image.fromarray(frame, "RGB").save(f"{stem}_rgb.jpg", quality=92)
        number += int(rng.integers(1, 4))


def synth(out: Path, *, persons: int = 24, frames: int = 20, size: tuple[int, int] = (120, 160),
          seed: int = 0) -> Path:
    """Write a BIWI look-alike (folders 01..`persons`) under `out` and return `out`."""
    if not 1 <= persons <= len(SUBJECTS):
        raise ValueError(f"persons must be 1..{len(SUBJECTS)} (BIWI has 24 sequences), got {persons}")
    if frames < 1 or min(size) < 32:
        raise ValueError(f"need frames >= 1 and both sides of size >= 32, got frames={frames}, size={size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    k = scaled_k(size)
    for sequence in list(SUBJECTS)[:persons]:
        look = _subject_look(SUBJECTS[sequence], seed)
        rng = np.random.default_rng([seed, int(sequence)])
        _write_sequence(out / sequence, look, k, frames, tuple(size), rng)
        (out / f"{sequence}.obj").write_text(_obj_text(look))
    return out


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --persons --frames --height --width --seed; the namespace holds synth()'s keyword names."""
    parser.add_argument("--persons", type=int, default=24, help="person folders 01..N (max 24)")
    parser.add_argument("--frames", type=int, default=20, help="frames per person folder")
    add_size_arguments(parser, (120, 160), (480, 640))
    parser.add_argument("--seed", type=int, default=0)
