"""A CamVid look-alike: street scenes with 32-class index masks, in the real folder layout.

Each image is sky over buildings and trees, a road in perspective with lane markings and
sidewalks, cars, pedestrians and poles, with colour jitter and pixel noise. Masks hold class
indices (Void = 30 on object outlines and on the ego car's bonnet, as in the real labels).
Validation frames come from their own sequence (0016E5), like the SegNet split.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from . import add_size_arguments

__all__ = ["CODES", "VOID", "synth", "add_cli_arguments"]

CODES = ["Animal", "Archway", "Bicyclist", "Bridge", "Building", "Car", "CartLuggagePram", "Child",
         "Column_Pole", "Fence", "LaneMkgsDriv", "LaneMkgsNonDriv", "Misc_Text", "MotorcycleScooter",
         "OtherMoving", "ParkingBlock", "Pedestrian", "Road", "RoadShoulder", "Sidewalk", "SignSymbol",
         "Sky", "SUVPickupTruck", "TrafficCone", "TrafficLight", "Train", "Tree", "Truck_Bus", "Tunnel",
         "VegetationMisc", "Void", "Wall"]
VOID = CODES.index("Void")
_C = {name: index for index, name in enumerate(CODES)}
# typical colours of each drawn class (RGB), jittered per image and per object
_BASE = {"Sky": (135, 180, 230), "Building": (140, 120, 105), "Tree": (60, 105, 45), "Road": (85, 85, 90),
         "Sidewalk": (165, 155, 145), "LaneMkgsDriv": (225, 225, 215), "Column_Pole": (70, 70, 75),
         "Pedestrian": (90, 60, 70), "Car": (150, 30, 35), "SignSymbol": (230, 200, 40),
         "Fence": (120, 95, 60), "Void": (20, 20, 20)}
_CAR_COLOURS = np.array([[150, 30, 35], [30, 50, 140], [220, 220, 225], [25, 25, 28], [110, 115, 120],
                         [200, 170, 60]], dtype=float)
# (sequence, frame-number format, first frame, step): name styles of the real stems
_TRAIN_SEQUENCES = [("0001TP", "{:06d}", 6690, 30), ("0006R0", "f{:05d}", 930, 30), ("Seq05VD", "f{:05d}", 0, 30)]
_VALID_SEQUENCE = ("0016E5", "{:05d}", 7959, 2)


class _Canvas:
    """An image and its mask painted together; every paint sets colour and class on a boolean mask."""

    def __init__(self, size: tuple[int, int], rng: np.random.Generator, tint: np.ndarray):
        self.h, self.w = size
        self.rng = rng
        self.tint = tint  # per-sequence lighting
        self.img = np.zeros((self.h, self.w, 3), np.float32)
        self.label = np.zeros((self.h, self.w), np.uint8)
        self.yy, self.xx = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        self.jitter = {name: rng.uniform(-18, 18, 3) for name in _BASE}  # per-image colour jitter

    def colour(self, name: str, spread: float = 10.0) -> np.ndarray:
        """This image's colour for class `name`, varied by up to `spread` per object."""
        return np.asarray(_BASE[name]) + self.jitter[name] + self.rng.uniform(-spread, spread, 3)

    def paint(self, mask: np.ndarray, name: str, colour: np.ndarray | None = None) -> None:
        """Set class `name` and a colour on the pixels of `mask`."""
        self.label[mask] = _C[name]
        self.img[mask] = self.colour(name) if colour is None else colour

    def shade(self, mask: np.ndarray, factor: float) -> None:
        """Texture inside one class (windows, wheels): changes colour, not the label."""
        self.img[mask] *= factor


def _scene_geometry(canvas: _Canvas) -> dict:
    """Horizon, vanishing point and road edges (as functions of the row) for one frame."""
    rng, h, w = canvas.rng, canvas.h, canvas.w
    horizon = h * rng.uniform(0.38, 0.5)
    vanish = w * rng.uniform(0.35, 0.65)
    spread_left, spread_right = rng.uniform(0.6, 1.1), rng.uniform(0.6, 1.1)
    depth = np.clip((canvas.yy - horizon) / (h - horizon), 0, None)  # 0 at the horizon, 1 at the bottom
    left = vanish - spread_left * w * depth
    right = vanish + spread_right * w * depth
    return {"horizon": horizon, "vanish": vanish, "depth": depth, "left": left, "right": right}


def _ground(canvas: _Canvas, geo: dict) -> None:
    """Sky above the horizon, road between its edges, sidewalks outside, dashed lane markings."""
    below = canvas.yy >= geo["horizon"]
    canvas.paint(~below, "Sky")
    canvas.img[~below] += ((canvas.yy[~below] / geo["horizon"]) * 30)[:, None]  # sky brightens downwards
    road = below & (canvas.xx >= geo["left"]) & (canvas.xx <= geo["right"])
    canvas.paint(below & ~road, "Sidewalk")
    canvas.paint(road, "Road")
    centre = geo["vanish"] + (geo["right"] - geo["left"]) * canvas.rng.uniform(-0.1, 0.1)
    half = 0.012 * canvas.w * geo["depth"] + 0.3
    dashes = np.sin(12.0 / (geo["depth"] + 0.08) + canvas.rng.uniform(0, 6.3)) > -0.2
    canvas.paint(road & (np.abs(canvas.xx - centre) <= half) & dashes & (geo["depth"] > 0.05), "LaneMkgsDriv")


def _buildings(canvas: _Canvas, geo: dict) -> None:
    """Buildings along both sides up to the horizon, with rows of darker windows."""
    rng, h, w, horizon = canvas.rng, canvas.h, canvas.w, geo["horizon"]
    x = 0.0
    while x < w:
        width = w * rng.uniform(0.08, 0.25)
        near_vanish = abs(x + width / 2 - geo["vanish"]) < 0.12 * w
        if not near_vanish or rng.random() < 0.3:  # leave sky showing down the street
            top = horizon * rng.uniform(0.05, 0.7)
            rows = slice(int(np.ceil(top)), int(np.ceil(horizon)))
            cols = slice(int(np.ceil(x)), int(np.ceil(min(x + width, w))))
            box = np.zeros((h, w), bool)
            box[rows, cols] = True
            canvas.paint(box, "Building")
            step = max(h / 24, 2.0)
            yy, xx = canvas.yy[rows, cols], canvas.xx[rows, cols]
            windows = np.zeros((h, w), bool)
            windows[rows, cols] = ((yy - top) % (2 * step) < step) & ((xx - x) % (2 * step) < step * 0.8)
            canvas.shade(windows, rng.uniform(0.55, 0.8))
        x += width


def _trees(canvas: _Canvas, geo: dict) -> None:
    """A few trees (trunk and leafy canopy) in front of the buildings."""
    rng, h, w, horizon = canvas.rng, canvas.h, canvas.w, geo["horizon"]
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0, w), horizon * rng.uniform(0.45, 0.9)
        radius = h * rng.uniform(0.07, 0.16)
        trunk = ((np.abs(canvas.xx - cx) <= max(radius * 0.12, 0.8)) & (canvas.yy >= cy)
                 & (canvas.yy <= horizon + 2))
        canopy = (canvas.xx - cx) ** 2 + ((canvas.yy - cy) * 1.2) ** 2 <= radius ** 2
        canvas.paint(trunk, "Tree", canvas.colour("Tree") * 0.6)
        canvas.paint(canopy, "Tree")
        canvas.shade(canopy & (rng.random((h, w)) < 0.3), 0.7)  # leafy texture


def _cars(canvas: _Canvas, geo: dict) -> np.ndarray:
    """Cars on the road, sized by perspective, far ones painted first so near ones overlap them."""
    rng, h, w, horizon = canvas.rng, canvas.h, canvas.w, geo["horizon"]
    cars = np.zeros((h, w), bool)
    for bottom in np.sort(horizon + (h - horizon) * rng.uniform(0.25, 1.0, rng.integers(1, 5))):
        scale = (bottom - horizon) / (h - horizon)
        row = min(int(bottom), h - 1)
        left, right = geo["left"][row, 0], geo["right"][row, 0]
        cw, ch = w * 0.35 * scale, h * 0.3 * scale
        cx = rng.uniform(left + cw / 2, max(right - cw / 2, left + cw / 2 + 1))
        body = (np.abs(canvas.xx - cx) <= cw / 2) & (canvas.yy <= bottom) & (canvas.yy >= bottom - ch)
        cabin = ((np.abs(canvas.xx - cx) <= cw * 0.35) & (canvas.yy < bottom - ch)
                 & (canvas.yy >= bottom - 1.45 * ch))
        colour = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] + rng.uniform(-15, 15, 3)
        canvas.paint(body | cabin, "Car", colour)
        canvas.shade(cabin | (body & (canvas.yy >= bottom - 0.25 * ch)), 0.45)  # windows and wheels
        cars |= body | cabin
    return cars


def _pedestrians(canvas: _Canvas, geo: dict) -> np.ndarray:
    """People standing on the sidewalks: an elliptic body and a round head."""
    rng, h, w, horizon = canvas.rng, canvas.h, canvas.w, geo["horizon"]
    people = np.zeros((h, w), bool)
    for foot in np.sort(horizon + (h - horizon) * rng.uniform(0.15, 0.95, rng.integers(1, 5))):
        scale = (foot - horizon) / (h - horizon)
        row = min(int(foot), h - 1)
        left_side = rng.random() < 0.5
        edge = geo["left"][row, 0] if left_side else geo["right"][row, 0]
        px = edge - w * rng.uniform(0.02, 0.2) * (1 if left_side else -1)
        ph, pw = h * 0.5 * scale + 3, w * 0.03 * scale + 1
        body = ((canvas.xx - px) / pw) ** 2 + ((canvas.yy - (foot - ph * 0.45)) / (ph * 0.45)) ** 2 <= 1
        head = (canvas.xx - px) ** 2 + (canvas.yy - (foot - ph * 0.95)) ** 2 <= (pw * 0.7) ** 2
        canvas.paint(body, "Pedestrian", canvas.colour("Pedestrian", 50))
        canvas.paint(head, "Pedestrian", np.array([205.0, 160, 130]))
        people |= body | head
    return people


def _poles(canvas: _Canvas, geo: dict) -> np.ndarray:
    """Thin poles from the sidewalk up past the horizon, half of them carrying a sign."""
    rng, h, w, horizon = canvas.rng, canvas.h, canvas.w, geo["horizon"]
    poles = np.zeros((h, w), bool)
    for _ in range(rng.integers(0, 3)):
        px = rng.uniform(0, w)
        top, bottom = horizon * rng.uniform(0.1, 0.6), horizon + (h - horizon) * rng.uniform(0.3, 0.9)
        pole = (np.abs(canvas.xx - px) <= max(w / 200, 0.6)) & (canvas.yy >= top) & (canvas.yy <= bottom)
        canvas.paint(pole, "Column_Pole")
        poles |= pole
        if rng.random() < 0.5:
            sign = (np.abs(canvas.xx - px) <= w * 0.02 + 1) & (np.abs(canvas.yy - top) <= h * 0.02 + 1)
            canvas.paint(sign, "SignSymbol")
            poles |= sign
    return poles


def _void(canvas: _Canvas, objects: np.ndarray) -> None:
    """Void on object outlines (where annotators leave edges unlabelled) and sometimes a bonnet."""
    label = canvas.label
    edge = np.zeros_like(objects)
    edge[1:] |= label[1:] != label[:-1]
    edge[:-1] |= label[1:] != label[:-1]
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[:, :-1] |= label[:, 1:] != label[:, :-1]
    outline = edge & objects & (canvas.rng.random(objects.shape) < 0.7)
    label[outline] = VOID  # the colour stays: the pixel shows the object, only the label is unknown
    if canvas.rng.random() < 0.5:
        h, w = canvas.h, canvas.w
        bonnet = canvas.yy >= h * (0.93 + 0.06 * ((canvas.xx - w / 2) / (w / 2)) ** 2)
        canvas.paint(bonnet, "Void")


def _frame(size: tuple[int, int], rng: np.random.Generator, tint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (RGB uint8 image (H, W, 3), class-index mask uint8 (H, W))."""
    canvas = _Canvas(size, rng, tint)
    geo = _scene_geometry(canvas)
    _ground(canvas, geo)
    _buildings(canvas, geo)
    _trees(canvas, geo)
    objects = _cars(canvas, geo) | _pedestrians(canvas, geo) | _poles(canvas, geo)
    _void(canvas, objects)
    img = canvas.img * canvas.tint * rng.uniform(0.85, 1.15) + rng.normal(0, 6, canvas.img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), canvas.label


def _stems(n: int, n_valid: int) -> tuple[list[str], list[str]]:
    """(train stems spread over the training sequences, valid stems from the validation sequence)."""
    def stem(sequence: tuple, k: int) -> str:
        name, fmt, first, step = sequence
        return f"{name}_{fmt.format(first + step * k)}"

    train = [stem(_TRAIN_SEQUENCES[i % 3], i // 3) for i in range(n - n_valid)]
    return train, [stem(_VALID_SEQUENCE, k) for k in range(n_valid)]


def synth(out: Path, *, n: int = 120, size: tuple[int, int] = (96, 128), seed: int = 0,
          valid_pct: float = 0.2) -> Path:
    """Write a CamVid look-alike (images/, labels/, codes.txt, valid.txt) under `out`; return `out`."""
    if n < 1 or not 0 <= valid_pct < 1 or min(size) < 16:
        raise ValueError(f"need n >= 1, 0 <= valid_pct < 1 and sides >= 16; got n={n}, "
                         f"valid_pct={valid_pct}, size={size}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    train, valid = _stems(n, int(round(n * valid_pct)))
    rng = np.random.default_rng(seed)
    tints = {seq[0]: rng.uniform(0.92, 1.08, 3) for seq in _TRAIN_SEQUENCES + [_VALID_SEQUENCE]}
    for index, stem in enumerate(train + valid):
        frame_rng = np.random.default_rng([seed, index])
        img, label = _frame(tuple(size), frame_rng, tints[stem.split("_")[0]])
        # light compression: noisy images dominate the generation time at default level
        Image.fromarray(img, "RGB").save(out / "images" / f"{stem}.png", compress_level=1)
        Image.fromarray(label, "L").save(out / "labels" / f"{stem}_P.png")
    (out / "codes.txt").write_text("".join(f"{code}\n" for code in CODES))
    (out / "valid.txt").write_text("".join(f"{stem}.png\n" for stem in valid))
    return out


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --n --height --width --seed --valid-pct; the namespace holds synth()'s keyword names."""
    parser.add_argument("--n", type=int, default=120, help="number of frames")
    add_size_arguments(parser, (96, 128), (720, 960), "; the lesson trains at 360x480")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--valid-pct", type=float, dest="valid_pct", default=0.2,
                        help="share of frames in valid.txt (all from sequence 0016E5)")
