"""A Planet (Amazon from space) look-alike: 17-tag satellite tiles in the real Kaggle layout."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from raylessons.errors import ConfigError

__all__ = ["TAGS", "WEATHER_TAGS", "sample_tags", "render", "synth", "add_cli_arguments"]

WEATHER_TAGS: tuple[str, ...] = ("clear", "partly_cloudy", "cloudy", "haze")
# share of each weather tag in the real train_v2.csv (28.4k, 7.3k, 2.1k, 2.7k of 40.5k)
_WEATHER_P = np.array([0.702, 0.179, 0.052, 0.067])
# P(tag | not cloudy): the real counts divided by the ~38.4k non-cloudy images
_LAND_P: dict[str, float] = {
    "primary": 0.977, "agriculture": 0.321, "road": 0.210, "water": 0.193,
    "cultivation": 0.117, "habitation": 0.095, "bare_ground": 0.0225,
    "selective_logging": 0.0089, "artisinal_mine": 0.0088, "blooming": 0.0086,
    "slash_burn": 0.0054, "blow_down": 0.0026, "conventional_mine": 0.0026,
}
TAGS: list[str] = sorted([*WEATHER_TAGS, *_LAND_P])

Rgb = tuple[int, int, int]


def sample_tags(rng: np.random.Generator) -> list[str]:
    """Draw one image's sorted tags: one weather tag, then land tags unless it is cloudy."""
    weather = WEATHER_TAGS[rng.choice(len(WEATHER_TAGS), p=_WEATHER_P / _WEATHER_P.sum())]
    if weather == "cloudy":  # in the real data a cloudy tile carries no land tag
        return ["cloudy"]
    names = list(_LAND_P)
    hits = rng.random(len(names)) < np.array([_LAND_P[t] for t in names])
    return sorted([weather, *(t for t, hit in zip(names, hits) if hit)])


# --- drawing helpers (lengths are in pixels of a 256 px tile, scaled by `u`) ---

def _jitter(rng: np.random.Generator, rgb: Rgb, amount: float = 12) -> Rgb:
    r, g, b = np.clip(np.asarray(rgb) + rng.normal(0, amount, 3), 0, 255).astype(int)
    return int(r), int(g), int(b)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float32 field in ~[0, 1] that varies over `cells` blobs per side."""
    low = rng.random((cells, cells), dtype=np.float32)
    return np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC))


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float, k: int = 7) -> list:
    """An irregular polygon of about radius r around (cx, cy)."""
    angles = np.sort(rng.uniform(0, 2 * math.pi, k))
    radii = r * rng.uniform(0.6, 1.2, k)
    return [(cx + q * math.cos(a), cy + q * math.sin(a)) for a, q in zip(angles, radii)]


def _box(cx: float, cy: float, w: float, h: float, angle: float) -> list:
    """Corners of a w x h rectangle centred on (cx, cy), rotated by angle (radians)."""
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + dx * c - dy * s, cy + dx * s + dy * c)
            for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))]


def _walk(rng: np.random.Generator, start, heading: float, steps: int, step: float,
          turn: float) -> list:
    """A polyline whose heading drifts by up to `turn` radians per step (rivers, tracks)."""
    x, y = start
    points = [(x, y)]
    for _ in range(steps):
        heading += rng.uniform(-turn, turn)
        x, y = x + step * math.cos(heading), y + step * math.sin(heading)
        points.append((x, y))
    return points


def _width(px: float, u: float) -> int:
    return max(1, round(px * u))


# --- one painter per land tag: each leaves a signature a small CNN can see at 64 px ---

def _agriculture(d: ImageDraw.ImageDraw, rng, u: float, size: int) -> None:
    """Light green-yellow rectangular fields."""
    palette = ((165, 190, 95), (190, 205, 115), (145, 175, 85))
    for _ in range(rng.integers(1, 5)):
        cx, cy = rng.uniform(0, size, 2)
        w, h = rng.uniform(40, 110, 2) * u
        d.polygon(_box(cx, cy, w, h, rng.uniform(0, math.pi)),
                  fill=_jitter(rng, palette[rng.integers(len(palette))]))


def _road(d, rng, u, size) -> None:
    """Thin light straight lines crossing the tile (sometimes with one bend)."""
    for _ in range(rng.integers(1, 4)):
        x, y = rng.uniform(0, size, 2)
        a = rng.uniform(0, math.pi)
        reach = size * 1.5
        pts = [(x - reach * math.cos(a), y - reach * math.sin(a)), (x, y)]
        if rng.random() < 0.3:
            a += rng.uniform(-0.6, 0.6)
        pts.append((x + reach * math.cos(a), y + reach * math.sin(a)))
        d.line(pts, fill=_jitter(rng, (205, 190, 160), 10), width=_width(rng.uniform(3.5, 5.5), u))


def _water(d, rng, u, size) -> None:
    """A blue meandering river or a lake."""
    colour = _jitter(rng, (40, 85, 150), 10)
    if rng.random() < 0.6:
        a = rng.uniform(0, 2 * math.pi)
        start = (size / 2 - 0.7 * size * math.cos(a), size / 2 - 0.7 * size * math.sin(a))
        pts = _walk(rng, start, a, 14, 22 * u, 0.5)
        d.line(pts, fill=colour, width=_width(rng.uniform(10, 20), u), joint="curve")
    else:
        for _ in range(rng.integers(1, 3)):
            cx, cy = rng.uniform(0, size, 2)
            d.polygon(_blob(rng, cx, cy, rng.uniform(24, 48) * u, 9), fill=colour)


def _cultivation(d, rng, u, size) -> None:
    """Small irregular brown clearings scattered in one area."""
    cx, cy = rng.uniform(0.2, 0.8, 2) * size
    for _ in range(rng.integers(4, 9)):
        x, y = cx + rng.normal(0, 28 * u), cy + rng.normal(0, 28 * u)
        d.polygon(_blob(rng, x, y, rng.uniform(10, 18) * u, 6), fill=_jitter(rng, (150, 100, 60), 12))


def _habitation(d, rng, u, size) -> None:
    """Clusters of small bright grey squares (roofs) on a pale ground."""
    for _ in range(rng.integers(1, 3)):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        d.polygon(_blob(rng, cx, cy, 30 * u, 8), fill=_jitter(rng, (150, 145, 130), 8))
        for _ in range(rng.integers(10, 22)):
            x, y = cx + rng.normal(0, 14 * u), cy + rng.normal(0, 14 * u)
            s = rng.uniform(6, 10) * u / 2
            d.rectangle((x - s, y - s, x + s, y + s), fill=_jitter(rng, (225, 225, 220), 12))


def _bare_ground(d, rng, u, size) -> None:
    """Tan blobs of exposed soil."""
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        d.polygon(_blob(rng, cx, cy, rng.uniform(15, 35) * u, 8), fill=_jitter(rng, (210, 175, 135), 10))


def _artisinal_mine(d, rng, u, size) -> None:
    """A few orange pits, each holding a turquoise muddy pool."""
    cx, cy = rng.uniform(0.15, 0.85, 2) * size
    for _ in range(rng.integers(2, 6)):
        x, y, r = cx + rng.normal(0, 18 * u), cy + rng.normal(0, 18 * u), rng.uniform(6, 11) * u
        d.ellipse((x - r, y - r, x + r, y + r), fill=_jitter(rng, (225, 125, 45), 10))
        r /= 2
        d.ellipse((x - r, y - r, x + r, y + r), fill=_jitter(rng, (90, 165, 150), 10))


def _conventional_mine(d, rng, u, size) -> None:
    """A large terraced pit: nested grey and orange rectangles."""
    cx, cy = rng.uniform(0.25, 0.75, 2) * size
    w = rng.uniform(60, 100) * u
    a = rng.uniform(0, math.pi)
    for k, colour in enumerate(((160, 155, 150), (195, 120, 65), (160, 155, 150), (195, 120, 65))):
        f = 1 - 0.22 * k
        d.polygon(_box(cx, cy, w * f, w * 0.7 * f, a), fill=_jitter(rng, colour, 6))


def _blooming(d, rng, u, size) -> None:
    """Bright yellow flowering crowns dotted over one area."""
    cx, cy = rng.uniform(0.2, 0.8, 2) * size
    for _ in range(rng.integers(15, 35)):
        x, y, r = cx + rng.normal(0, 30 * u), cy + rng.normal(0, 30 * u), rng.uniform(3, 5.5) * u
        d.ellipse((x - r, y - r, x + r, y + r), fill=_jitter(rng, (240, 220, 60), 10))


def _blow_down(d, rng, u, size) -> None:
    """A pale patch streaked in one direction: trees felled by the same gust."""
    cx, cy = rng.uniform(0.25, 0.75, 2) * size
    d.polygon(_blob(rng, cx, cy, rng.uniform(24, 34) * u, 8), fill=_jitter(rng, (105, 140, 70), 6))
    a = rng.uniform(0, math.pi)
    dx, dy = math.cos(a), math.sin(a)
    for _ in range(rng.integers(8, 14)):
        x, y = cx + rng.normal(0, 12 * u), cy + rng.normal(0, 12 * u)
        h = rng.uniform(10, 18) * u
        d.line([(x - h * dx, y - h * dy), (x + h * dx, y + h * dy)],
               fill=_jitter(rng, (180, 220, 135), 8), width=_width(4.5, u))


def _selective_logging(d, rng, u, size) -> None:
    """A winding brown track ending in small round clearings."""
    pts = _walk(rng, tuple(rng.uniform(0.2, 0.8, 2) * size), rng.uniform(0, 2 * math.pi),
                int(rng.integers(7, 12)), 12 * u, 0.9)
    colour = _jitter(rng, (170, 135, 95), 8)
    d.line(pts, fill=colour, width=_width(3, u), joint="curve")
    for x, y in pts[::3]:
        r = rng.uniform(4, 7) * u
        d.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _slash_burn(d, rng, u, size) -> None:
    """Charcoal-black burnt spots with a grey ring of ash."""
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        r = rng.uniform(9, 16) * u
        d.polygon(_blob(rng, cx, cy, r * 1.5, 8), fill=_jitter(rng, (120, 115, 110), 8))
        d.polygon(_blob(rng, cx, cy, r, 8), fill=_jitter(rng, (25, 22, 20), 5))


# drawing order: large ground covers first, small marks last so they stay visible
_PAINTERS: dict[str, Callable] = {
    "bare_ground": _bare_ground, "agriculture": _agriculture, "cultivation": _cultivation,
    "water": _water, "road": _road, "habitation": _habitation, "blow_down": _blow_down,
    "selective_logging": _selective_logging, "slash_burn": _slash_burn,
    "blooming": _blooming, "artisinal_mine": _artisinal_mine,
    "conventional_mine": _conventional_mine,
}


def _ground(rng: np.random.Generator, size: int, primary: bool) -> np.ndarray:
    """(H, W, 3) float ground: mottled dark-green canopy, or flat olive open land."""
    base, amp = ((38, 72, 36), 55.0) if primary else ((110, 118, 78), 25.0)
    mottle = _smooth_noise(rng, size, int(rng.integers(12, 24))) - 0.5
    return np.asarray(_jitter(rng, base, 6), np.float32) + amp * mottle[..., None]


def _weather(img: np.ndarray, weather: str, rng: np.random.Generator) -> np.ndarray:
    """Lay haze or clouds over the (H, W, 3) ground; clear leaves it as is."""
    size = img.shape[0]
    if weather == "haze":  # whitish low-contrast veil over the whole tile
        alpha = np.float32(rng.uniform(0.35, 0.6)) * (0.85 + 0.3 * _smooth_noise(rng, size, 4))
        veil = np.asarray(_jitter(rng, (200, 202, 212), 6), np.float32)
        return img * (1 - alpha[..., None]) + veil * alpha[..., None]
    if weather == "clear":
        return img
    field = _smooth_noise(rng, size, int(rng.integers(3, 6)))
    cover = rng.uniform(0.15, 0.45) if weather == "partly_cloudy" else rng.uniform(0.92, 1.0)
    level = np.quantile(field, 1 - cover)
    alpha = np.clip((field - np.float32(level)) / np.float32(0.08), 0, 1)[..., None]
    shade = 0.88 + 0.12 * _smooth_noise(rng, size, 8)[..., None]
    cloud = np.asarray(_jitter(rng, (238, 238, 240), 5), np.float32) * shade
    return img * (1 - alpha) + cloud * alpha


def render(tags: list[str], rng: np.random.Generator, size: int = 256) -> Image.Image:
    """Draw one RGB tile showing `tags`, with random placement, colour jitter and noise."""
    weather = next(t for t in tags if t in WEATHER_TAGS)
    # a cloudy tile hides canopy that is deliberately left unlabelled, as in the real data
    ground = _ground(rng, size, "primary" in tags or weather == "cloudy")
    tile = Image.fromarray(np.clip(ground, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(tile)
    u = size / 256
    for tag, paint in _PAINTERS.items():
        if tag in tags:
            paint(draw, rng, u, size)
    img = _weather(np.asarray(tile, np.float32), weather, rng)
    gain = (rng.uniform(0.9, 1.1) * rng.uniform(0.96, 1.04, 3)).astype(np.float32)
    img = img * gain  # exposure and white balance
    img += 5 * rng.standard_normal(img.shape, dtype=np.float32)  # sensor noise
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _write_split(folder: Path, prefix: str, n: int, size: int, seed: int, stream: int) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, stream, i])  # image i does not depend on n
        tags = sample_tags(rng)
        render(tags, rng, size).save(folder / f"{prefix}_{i}.jpg", quality=90)
        rows.append((f"{prefix}_{i}", " ".join(tags)))
    return rows


def synth(out: Path, *, n: int = 2000, size: int = 256, seed: int = 0, n_test: int = 0) -> Path:
    """Write train_v2.csv, train-jpg/ (and test-jpg/ when n_test > 0) under `out`; return `out`."""
    if n < 1 or n_test < 0:
        raise ConfigError(f"planet synth needs n >= 1 and n_test >= 0, got n={n}, n_test={n_test}")
    if size < 16:
        raise ConfigError(f"planet synth needs size >= 16 px, got {size}")
    out = Path(out)
    rows = _write_split(out / "train-jpg", "train", n, size, seed, stream=0)
    if n_test:
        _write_split(out / "test-jpg", "test", n_test, size, seed, stream=1)
    lines = ["image_name,tags", *(f"{name},{tags}" for name, tags in rows)]
    (out / "train_v2.csv").write_text("\n".join(lines) + "\n")
    return out


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --n --size --seed --n-test, whose dest names are synth's keyword arguments."""
    parser.add_argument("--n", type=int, default=2000, help="labelled training images")
    parser.add_argument("--size", type=int, default=256, help="tile side in pixels (real: 256)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    parser.add_argument("--n-test", dest="n_test", type=int, default=0,
                        help="unlabelled images written to test-jpg/")
