"""Reading images from disk and from request bodies, with errors that name the culprit."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..limits import MAX_PIXELS

__all__ = ["open_image", "open_mask", "decode_image_bytes", "pil_to_tensor", "MAX_PIXELS"]



def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """uint8 (3, H, W) tensor of an RGB PIL image."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _checked_open(source, where: str, max_pixels: int) -> Image.Image:
    """Open lazily, check the declared size before decoding a single pixel, then decode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
            w, h = img.size
            if w <= 0 or h <= 0:
                raise DataError(f"image has zero size ({w}x{h})", where)
            if w * h > max_pixels:
                raise DataError(f"image declares {w}x{h} pixels, more than the limit of {max_pixels}", where)
            img.load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("image file not found", where) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise DataError(f"not a readable image ({type(e).__name__}: {e})", where) from None
    return img


def open_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """uint8 (3, H, W) RGB tensor of an image file; corrupt or missing files raise DataError."""
    img = _checked_open(path, str(path), max_pixels)
    return pil_to_tensor(img)


def open_mask(path: str | Path, n_codes: int | None = None) -> torch.Tensor:
    """int64 (H, W) class-index mask of a single-channel PNG; values past `n_codes` raise DataError."""
    img = _checked_open(path, str(path), MAX_PIXELS)
    if img.mode not in ("L", "P", "I", "I;16"):
        img = img.convert("L")
    mask = torch.from_numpy(np.asarray(img).astype(np.int64))
    if n_codes is not None and mask.numel() and int(mask.max()) >= n_codes:
        raise DataError(f"mask holds class {int(mask.max())} but only {n_codes} codes exist", path)
    return mask


def decode_image_bytes(body: bytes, max_pixels: int = MAX_PIXELS, where: str = "request body") -> Image.Image:
    """An RGB PIL image decoded from bytes; empty, corrupt or oversized input raises DataError."""
    if not body:
        raise DataError("empty body: expected a JPEG or PNG image", where)
    img = _checked_open(io.BytesIO(body), where, max_pixels)
    return img.convert("RGB")
