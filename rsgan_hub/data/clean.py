"""Cleaning one raw file: any readable image -> 8-bit RGB, or the reason it is skipped.

The rules (shared by scenes, side-by-side pairs and raster tiles): grey, palette, CMYK/YCbCr and
16-bit images are converted; alpha must be fully opaque; odd band counts are refused. Anything that
is not 8-bit follows the project's one scaling rule, the per-band 2-98 % stretch of
`rsgan_hub.geo` (the rule `rsgan translate` applies too), with each file's own statistics. Unreadable, truncated or non-image files become a reason string, never an exception.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..geo import stretch, stretch_limits

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


def to_rgb_array(array: np.ndarray) -> np.ndarray | str:
    """(H, W) or (H, W, C) array of any integer depth -> (H, W, 3) uint8, or the reason it cannot be.

    One band is grey, three are RGB, a fourth (or a grey-alpha second) is alpha and must be fully
    opaque: there is no well-defined colour under a transparent pixel. Data that is not 8-bit
    (16-bit, 32-bit, float) is stretched per band by `rsgan_hub.geo`'s 2-98 % rule.
    """
    if array.ndim == 2:
        array = array[:, :, None]
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    channels = array.shape[2]
    if channels in (2, 4):
        alpha = array[:, :, -1]
        opaque = 1.0 if array.dtype.kind == "f" else np.iinfo(array.dtype).max
        if alpha.min() < opaque:
            return "transparent pixels"
        array = array[:, :, :-1]
        channels -= 1
    if channels not in (1, 3):
        return f"{channels} bands"
    if array.dtype != np.uint8:
        bands = np.moveaxis(array, 2, 0)  # (C, H, W)
        array = np.moveaxis(stretch(bands, stretch_limits(bands)), 0, 2)
    return np.repeat(array, 3, axis=2) if channels == 1 else np.ascontiguousarray(array)


def clean_image(data: bytes) -> Image.Image | str:
    """Encoded image bytes -> 8-bit RGB PIL image, or the reason it is skipped."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the pixels are what matter
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()  # decode now: truncated files fail here, not later in training
    except UnidentifiedImageError:
        return "not an image"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "too many pixels"
    except (OSError, SyntaxError, ValueError, EOFError):
        return "truncated or corrupt"
    if image.mode == "RGB":
        return image
    if image.mode in ("P", "PA"):  # palette: expand, keeping any transparency
        image = image.convert("RGBA")
    elif image.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    array = to_rgb_array(np.asarray(image))
    return array if isinstance(array, str) else Image.fromarray(array, mode="RGB")


def encode_rgb(image: Image.Image, original: bytes | None = None) -> dict:
    """A `datasets.Image` value: the original bytes when already 8-bit RGB JPEG/PNG, else lossless PNG."""
    if original is not None and image.format in ("JPEG", "PNG"):  # not converted: keep the file as is
        return {"bytes": original, "path": None}
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast; PNG keeps the decoded pixels exactly
    return {"bytes": buffer.getvalue(), "path": None}


def _read(path: str) -> bytes | str:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        return f"unreadable file ({err.strerror or type(err).__name__})"
