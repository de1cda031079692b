"""Cleaning one raw file: any readable image -> 8-bit RGB, or the reason it is skipped.

The rules are `rsgan_hub.geo.to_rgb8`'s, the ones `rsgan translate` applies too (shared by scenes,
side-by-side pairs and raster tiles): grey, palette, CMYK/YCbCr and 16-bit images are converted;
alpha must be fully opaque; odd band counts are refused; anything that is not 8-bit follows the
per-band 2-98 % stretch, with each file's own statistics. Unreadable, truncated or non-image files
and unusable images become a reason string, never an exception.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..geo import UnusableImage, to_rgb8

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


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
    try:
        return Image.fromarray(to_rgb8(image), mode="RGB")
    except UnusableImage as err:
        return err.reason


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
