"""fastai v1's `get_transforms` on torchvision.transforms.v2, applied jointly to an image and its mask or points.

Conventions (read these before touching point maths):
- Public points are (row, col) in PIXEL-INDEX coordinates: the centre of pixel (i, j) is (i, j), so an
  H×W image covers rows [-0.5, H-0.5] and cols [-0.5, W-0.5].
- Inside the pipeline points travel as `tv_tensors.KeyPoints` (x, y) = (col + 0.5, row + 0.5), the
  "pixel-corner" convention. In torchvision 0.29 that is the convention its resize, affine/rotate and
  perspective keypoint kernels agree with the image kernels (checked against a bright dot), whereas
  `horizontal_flip`/`vertical_flip` on KeyPoints use W-1-x (pixel-index convention). So flips are done by
  `RandomDihedral` here, which maps keypoints with x -> W - x (exact in the corner convention).
- `points_to_unit` maps the image's outer edges to ±1 (grid_sample align_corners=False):
  unit = (p + 0.5) / (size / 2) - 1. fastai v1 used p / (size / 2) - 1, which differs by half a pixel.
- Masks travel shifted by +1 so that 0 marks "outside the source" (every geometric v2 transform fills with
  0 by default); the pipeline then writes `mask_fill` there. Extra transforms must keep fill=0 for masks.
- Out-of-source image areas are black (v2 affine/perspective fill 0); fastai v1 used reflection padding.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from raylessons.errors import ConfigError, DataError

__all__ = [
    "check_size",
    "imagenet_stats", "TargetKind", "get_transforms", "Pipeline", "RandomDihedral", "RandomZoom",
    "JointResize", "points_to_unit", "points_from_unit",
]

imagenet_stats: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

TargetKind = Literal["none", "mask", "points"]
_TARGET_KINDS = ("none", "mask", "points")
_SPATIAL = (tv_tensors.Image, tv_tensors.Mask, tv_tensors.KeyPoints)


def points_to_unit(points_rc: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Pixel-index (row, col) -> [-1, 1]; the image's outer edges (-0.5 and H-0.5) map to -1 and +1."""
    half = torch.tensor(size_hw, dtype=torch.float32, device=points_rc.device) / 2
    return (points_rc.float() + 0.5) / half - 1


def points_from_unit(points_unit: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of `points_to_unit`: [-1, 1] -> pixel-index (row, col) of an image of `size_hw`."""
    half = torch.tensor(size_hw, dtype=torch.float32, device=points_unit.device) / 2
    return (points_unit.float() + 1) * half - 0.5


def _resample_mode(inpt: Any) -> F.InterpolationMode:
    # nearest-exact samples the source pixel whose centre is closest, like the images' bilinear grid
    return F.InterpolationMode.NEAREST_EXACT if isinstance(inpt, tv_tensors.Mask) else F.InterpolationMode.BILINEAR


class JointResize(v2.Transform):
    """Resize images (bilinear, antialiased), masks (nearest) and points; int = shorter side, (h, w) = squish."""

    _transformed_types = _SPATIAL

    def __init__(self, size: int | tuple[int, int]):
        super().__init__()
        self.size = [size] if isinstance(size, int) else list(size)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.resize(inpt, self.size, interpolation=_resample_mode(inpt), antialias=True)


def _dihedral_points(points: tv_tensors.KeyPoints, k: int) -> tv_tensors.KeyPoints:
    h, w = points.canvas_size
    xy = points.as_subclass(torch.Tensor).clone()  # (..., 2) as (x, y), pixel-corner convention
    if k & 1:
        xy[..., 0] = w - xy[..., 0]
    if k & 2:
        xy[..., 1] = h - xy[..., 1]
    if k & 4:
        return tv_tensors.wrap(xy.flip(-1), like=points, canvas_size=(w, h))
    return tv_tensors.wrap(xy, like=points)


def _dihedral(inpt: Any, k: int) -> Any:
    """Apply dihedral element k (bit 0: left-right flip, bit 1: up-down flip, bit 2: transpose)."""
    if isinstance(inpt, tv_tensors.KeyPoints):
        h, w = inpt.canvas_size
        out = _dihedral_points(inpt, k)
    else:
        h, w = inpt.shape[-2:]
        out = F.horizontal_flip(inpt) if k & 1 else inpt
        out = F.vertical_flip(out) if k & 2 else out
        if k & 4:
            out = tv_tensors.wrap(out.transpose(-1, -2).contiguous(), like=inpt)
    if k & 4 and h != w:
        # fastai's dihedral works in [-1, 1] coordinates, so on a non-square image the transposed
        # content is squished back to (h, w): that keeps every sample of a batch the same shape
        out = F.resize(out, [h, w], interpolation=_resample_mode(inpt), antialias=True)
    return out


class RandomDihedral(v2.Transform):
    """One of the 8 dihedral symmetries, uniformly (p=1); `lr_only` restricts it to a left-right flip with p=0.5.

    Element k: bit 0 flips left-right, bit 1 flips up-down, bit 2 transposes (after the flips).
    `ks` draws only among the listed elements (e.g. `ks=(2,)` is a fixed up-down flip).
    """

    _transformed_types = _SPATIAL

    def __init__(self, lr_only: bool = False, ks: Sequence[int] | None = None):
        super().__init__()
        ks = tuple(ks) if ks is not None else ((0, 1) if lr_only else tuple(range(8)))
        if not ks or any(k not in range(8) for k in ks):
            raise ConfigError(f"dihedral elements must be ints in 0..7, got {ks}")
        self.lr_only, self.ks = lr_only, ks

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": self.ks[int(torch.randint(0, len(self.ks), ()))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _dihedral(inpt, params["k"])


class RandomZoom(v2.Transform):
    """Zoom in by a scale uniform in [1, max_zoom] on a random focal point; the view stays inside the source."""

    _transformed_types = _SPATIAL

    def __init__(self, max_zoom: float):
        super().__init__()
        self.max_zoom = max_zoom

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        scale = 1 + (self.max_zoom - 1) * float(torch.rand(()))
        row_pct, col_pct = torch.rand(2).tolist()
        # The focal point moves by at most (1 - 1/scale) of the half size, so the zoomed window never leaves
        # the source (fastai's rand_zoom); F.affine translates in output pixels, hence the factor `scale`.
        tx = -(2 * col_pct - 1) * (w / 2) * (scale - 1)
        ty = -(2 * row_pct - 1) * (h / 2) * (scale - 1)
        return {"scale": scale, "translate": [tx, ty]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.affine(inpt, angle=0.0, translate=params["translate"], scale=params["scale"], shear=[0.0, 0.0],
                        interpolation=F.InterpolationMode.BILINEAR)


def _check_options(max_rotate: float, max_zoom: float, max_lighting: float, max_warp: float,
                   p_affine: float, p_lighting: float) -> None:
    checks = [
        (max_rotate >= 0, f"max_rotate must be >= 0 degrees, got {max_rotate}"),
        (max_zoom >= 1, f"max_zoom must be >= 1 (1 = no zoom), got {max_zoom}"),
        (0 <= max_lighting < 1, f"max_lighting must be in [0, 1), got {max_lighting}"),
        (0 <= max_warp <= 1, f"max_warp must be in [0, 1], got {max_warp}"),
        (0 <= p_affine <= 1, f"p_affine must be a probability in [0, 1], got {p_affine}"),
        (0 <= p_lighting <= 1, f"p_lighting must be a probability in [0, 1], got {p_lighting}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def get_transforms(do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10., max_zoom: float = 1.1,
                   max_lighting: float = 0.2, max_warp: float = 0.2, p_affine: float = 0.75,
                   p_lighting: float = 0.75, xtra_tfms: list | None = None) -> tuple[list, list]:
    """(train augmentations, valid augmentations) with fastai v1's meanings."""
    _check_options(max_rotate, max_zoom, max_lighting, max_warp, p_affine, p_lighting)
    train: list = []
    if do_flip:
        train.append(RandomDihedral(lr_only=not flip_vert))
    # fill=None: grid_sample's zero padding, the same black/0 as fill=0 without v2's extra fill channel (~2x faster)
    if max_warp:
        # fastai moves each corner by up to max_warp half-sizes; v2 moves corners inwards by up to
        # distortion_scale half-sizes, so the same number gives the same largest displacement
        train.append(v2.RandomPerspective(distortion_scale=max_warp, p=p_affine, fill=None))
    if max_rotate:
        # v2.RandomRotation defaults to nearest; images want bilinear (masks are always nearest)
        rotate = v2.RandomRotation(degrees=max_rotate, interpolation=F.InterpolationMode.BILINEAR, fill=None)
        train.append(v2.RandomApply([rotate], p=p_affine))
    if max_zoom > 1:
        train.append(v2.RandomApply([RandomZoom(max_zoom)], p=p_affine))
    if max_lighting:
        # fastai: brightness moves mid-grey to U(0.5(1-L), 0.5(1+L)) (logit shift); a factor U(1-L, 1+L)
        # gives the same mid-grey range. Contrast: fastai scales logits by log-U(1-L, 1/(1-L)); ColorJitter
        # blends with the mean grey by a factor U(1-L, 1/(1-L)). Both only touch images.
        light = max_lighting
        train.append(v2.RandomApply([v2.ColorJitter(brightness=(1 - light, 1 + light))], p=p_lighting))
        train.append(v2.RandomApply([v2.ColorJitter(contrast=(1 - light, 1 / (1 - light)))], p=p_lighting))
    train.extend(xtra_tfms or [])
    return train, []


def check_size(size) -> int | tuple[int, int] | None:
    """`size` as None, a positive int or a (height, width) tuple of positive ints (numpy numbers, as in the
    lesson's `src_size // 2`, become Python ints); anything else is a ConfigError."""
    if size is None:
        return None
    if isinstance(size, (np.ndarray, np.integer)):
        size = size.tolist()
    if isinstance(size, (tuple, list)):
        size = tuple(s.item() if isinstance(s, np.integer) else s for s in size)
    if isinstance(size, bool) or not isinstance(size, (int, tuple)):
        raise ConfigError(f"size must be an int, a (height, width) tuple or None, got {size!r}")
    if isinstance(size, int):
        if size <= 0:
            raise ConfigError(f"size must be a positive int, got {size}")
        return size
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ConfigError(f"a tuple size must be two positive ints (height, width), got {size!r}")
    return size


def _size_tfms(size: int | tuple[int, int] | None, train: bool) -> list:
    size = check_size(size)
    if size is None:
        return []
    if isinstance(size, int):
        return [JointResize(size), v2.RandomCrop(size) if train else v2.CenterCrop(size)]
    return [JointResize(size)]


class Pipeline:
    """Resize/crop to `size` + the augmentations, applied jointly to an image and its target.

    `target_kind` says what the target is: "none" (not spatial, e.g. multi-hot labels: returned unchanged),
    "mask" (class ids (H, W)) or "points" ((K, 2) pixel (row, col)). Resizing happens first, so the
    augmentations run on the small image.
    """

    def __init__(self, tfms: list, size: int | tuple[int, int] | None, train: bool,
                 mask_fill: int = 0, remove_out: bool = True, target_kind: TargetKind = "none"):
        if target_kind not in _TARGET_KINDS:
            raise ConfigError(f"target_kind must be one of {_TARGET_KINDS}, got {target_kind!r}")
        self.size, self.train, self.target_kind = size, train, target_kind
        self.mask_fill, self.remove_out = int(mask_fill), remove_out
        to_float = v2.ToDtype(torch.float32, scale=True)  # images only; masks and points keep their dtype
        self.tfm = v2.Compose(_size_tfms(size, train) + [to_float] + list(tfms))

    def __call__(self, image: torch.Tensor, target=None) -> tuple[torch.Tensor, object]:
        """Transform `image` (uint8 (3, H, W)) and `target` with the same random draws."""
        _check_image(image)
        x = tv_tensors.Image(image)
        if target is None or self.target_kind == "none":
            self._check_not_spatial(image, target)
            return self.tfm(x).as_subclass(torch.Tensor), target
        if self.target_kind == "mask":
            return self._call_mask(x, target)
        return self._call_points(x, target)

    def _check_not_spatial(self, image: torch.Tensor, target: object) -> None:
        # A mask passed with the default target_kind would silently come back unaligned: say so instead.
        if isinstance(target, torch.Tensor) and target.ndim >= 2 and target.shape[-2:] == image.shape[-2:]:
            raise ConfigError("the target has the image's (H, W) shape but target_kind='none'; "
                              "pass target_kind='mask' to Pipeline so it is transformed with the image")

    def _call_mask(self, x: tv_tensors.Image, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(mask, torch.Tensor) or mask.shape != x.shape[-2:] or mask.is_floating_point():
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise DataError(f"a mask must be an integer tensor of shape {tuple(x.shape[-2:])}, got {got}",
                            where="Pipeline")
        low, high = (int(v) for v in torch.aminmax(mask))
        if low < 0:
            raise DataError(f"mask values must be class ids >= 0, got {low}", where="Pipeline")
        # +1: 0 now means "outside the source"; uint8 when it fits, as v2 resamples it ~3x faster than int64
        shifted = mask.to(torch.uint8 if high < 255 else torch.int64) + 1
        x, m = self.tfm(x, tv_tensors.Mask(shifted))
        m = m.as_subclass(torch.Tensor).long()
        return x.as_subclass(torch.Tensor), torch.where(m == 0, self.mask_fill, m - 1)

    def _call_points(self, x: tv_tensors.Image, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[1] != 2:
            got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
            raise DataError(f"points must be a (K, 2) tensor of (row, col), got {got}", where="Pipeline")
        xy = points.float().flip(-1) + 0.5  # (K, 2) (x, y), pixel-corner convention
        x, kp = self.tfm(x, tv_tensors.KeyPoints(xy, canvas_size=tuple(x.shape[-2:])))
        rc = kp.as_subclass(torch.Tensor).flip(-1) - 0.5  # back to (row, col), pixel index
        if self.remove_out:
            h, w = x.shape[-2:]
            inside = (rc[:, 0] >= -0.5) & (rc[:, 0] <= h - 0.5) & (rc[:, 1] >= -0.5) & (rc[:, 1] <= w - 0.5)
            rc = rc[inside]
        return x.as_subclass(torch.Tensor), rc.float()

    def __repr__(self) -> str:
        return (f"Pipeline(size={self.size}, train={self.train}, target_kind={self.target_kind!r}, "
                f"mask_fill={self.mask_fill}, remove_out={self.remove_out}, tfm={self.tfm})")


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise DataError(f"an image must be a (C, H, W) tensor, got {got}", where="Pipeline")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise DataError(f"an image must be uint8 (0-255) or float (0-1), got {image.dtype}", where="Pipeline")
