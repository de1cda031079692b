"""Reading and writing the scenes `rsgan translate` works on: PNG / JPEG through Pillow, TIFF and
GeoTIFF through rasterio (GDAL), read and written in row windows so a large raster streams through
the tiler (`tiling.translate_rows`) without being held in memory twice. A georeferenced input gives
an output with the same CRS, transform (or GCPs) and size.

Pixel values reach the networks as 8-bit RGB (the pix2pix paper's maps and photos are 8-bit):
* bands: `bands` picks three raster bands (1-based, default 1,2,3) or one band, repeated as grey; a
  one- or two-band raster defaults to its first band; a palette band is expanded through its colour map.
* the scaling rule for anything that is not 8-bit (16-bit, 32-bit, float): each band is stretched
  linearly so that its 2nd percentile maps to 0 and its 98th to 255, clipping outside (the usual
  "2-98 % cumulative cut" of GIS viewers); percentiles come from a decimated read of the whole band
  (at most 1024 px on the long side), ignoring nodata, so every strip uses the same stretch.
* Pillow images (`to_rgb8`, the rule dataset conversion applies too): EXIF orientation is applied;
  grey, palette, CMYK and YCbCr become RGB; alpha must be fully opaque (a transparent pixel has no
  colour to translate); 16/32-bit grey images follow the scaling rule above.

Decompression bombs: the pixel count is read from the header and checked against `max_pixels`
(default 120 megapixels) before anything is decoded. Complex-valued rasters (SAR) are refused: which
real image to draw from them (amplitude, phase, dB) is the user's choice.

Every file `write_scene` writes names rsgan_hub as its software (the TIFF Software tag, a PNG text
chunk, a JPEG comment), so `written_by_rsgan` can tell an earlier output, safe to replace, from a
file of the user's.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .io import atomic_path, first_line

DEFAULT_MAX_PIXELS = 120_000_000
MIN_SIDE = 8  # smaller images carry too little context to translate
STRETCH_PERCENTILES = (2.0, 98.0)
STATS_SIDE = 1024  # long side of the decimated read the percentiles come from
PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
TIFF_SUFFIXES = (".tif", ".tiff")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_PIL_LIMIT_LOCK = threading.Lock()
SOFTWARE = "rsgan_hub translate"


@dataclass
class Scene:
    """An opened input image: its size, a strip reader and its georeferencing (None if plain)."""

    height: int
    width: int
    read_rows: Callable[[int, int], np.ndarray]  # (y0, y1) -> (y1 - y0, width, 3) uint8
    georef: dict | None = None  # rasterio profile keys: crs, transform, gcps


def output_format(path: str | Path) -> str:
    """"GTiff", "PNG" or "JPEG" from the output suffix; ValueError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "GTiff"
    if suffix in PIL_FORMATS:
        return PIL_FORMATS[suffix]
    raise ValueError(f"{path}: output must end in .png, .jpg, .jpeg, .tif or .tiff")


def check_size(height: int, width: int, max_pixels: int | None, what: str = "image") -> None:
    """ValueError for empty, tiny or too-large images (the limit guards against decompression bombs)."""
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ValueError(f"{what} is {width}x{height}; translation needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if max_pixels is not None and height * width > max_pixels:
        raise ValueError(f"{what} is {width}x{height} = {height * width / 1e6:.1f} megapixels, over the limit of "
                         f"{max_pixels / 1e6:.1f} (raise it with --max-pixels)")


def stretch_limits(bands: np.ndarray) -> list[tuple[float, float]]:
    """Per-band (low, high) of the scaling rule for a (C, H, W) array, masked arrays skip nodata."""
    limits = []
    for band in bands:
        values = band.compressed() if np.ma.isMaskedArray(band) else band.ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            limits.append((0.0, 1.0))
            continue
        low, high = np.percentile(values, STRETCH_PERCENTILES)
        limits.append((float(low), float(high) if high > low else float(low) + 1.0))
    return limits


def stretch(bands: np.ndarray, limits: Sequence[tuple[float, float]]) -> np.ndarray:
    """(C, H, W) array of any dtype -> (C, H, W) uint8 by the scaling rule."""
    out = np.empty(bands.shape, np.uint8)
    for i, (band, (low, high)) in enumerate(zip(bands, limits)):
        scaled = (np.nan_to_num(band.astype(np.float32), nan=low) - low) * (255.0 / (high - low))
        out[i] = np.clip(scaled, 0, 255).round()
    return out


class UnusableImage(ValueError):
    """An image with no well-defined 8-bit RGB form; `reason` is the short form ("transparent pixels")."""

    def __init__(self, reason: str):
        super().__init__(f"{reason}: only opaque grey, palette or RGB images (1 or 3 bands) can be used")
        self.reason = reason


def array_to_rgb8(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) array of any integer or float depth -> (H, W, 3) uint8, by the project's one rule.

    One band is grey, three are RGB, a fourth (or a grey-alpha second) is alpha and must be fully
    opaque: there is no well-defined colour under a transparent pixel (`UnusableImage`, as for other
    band counts). Data that is not 8-bit (16-bit, 32-bit, float) follows the scaling rule.
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
            raise UnusableImage("transparent pixels")
        array = array[:, :, :-1]
        channels -= 1
    if channels not in (1, 3):
        raise UnusableImage(f"{channels} bands")
    if array.dtype != np.uint8:
        bands = np.moveaxis(array, 2, 0)  # (C, H, W)
        array = np.moveaxis(stretch(bands, stretch_limits(bands)), 0, 2)
    return np.repeat(array, 3, axis=2) if channels == 1 else np.ascontiguousarray(array)


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> (H, W, 3) uint8 RGB array (`array_to_rgb8`'s rule): palette images are
    expanded through their colour map (keeping any transparency), CMYK / YCbCr / LAB / HSV / 1-bit
    converted, 16-bit read as is and stretched. `UnusableImage` for transparent pixels."""
    if image.mode == "RGB":
        return np.asarray(image)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif image.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    return array_to_rgb8(np.asarray(image))


def is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in TIFF_MAGIC


@contextlib.contextmanager
def open_scene(path: str | Path, bands: Sequence[int] | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[Scene]:
    """Open an image file for strip-wise reading; errors are one-line ValueError / OSError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if is_tiff(path):
        with _open_raster(path, bands, max_pixels) as scene:
            yield scene
        return
    if bands is not None:
        raise ValueError(f"{path}: --bands applies to TIFF / GeoTIFF rasters only")
    array = _read_pillow(path, max_pixels)
    yield Scene(array.shape[0], array.shape[1], lambda y0, y1: array[y0:y1])


def _read_pillow(path: Path, max_pixels: int | None) -> np.ndarray:
    try:
        with _PIL_LIMIT_LOCK:  # Pillow's own bomb check would pre-empt ours (and our configurable limit)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(path)  # reads the header only
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except OSError as err:
        raise ValueError(f"{path}: not an image Pillow can read ({err})") from err
    with image:
        check_size(image.height, image.width, max_pixels, what=str(path))
        try:
            return to_rgb8(ImageOps.exif_transpose(image))  # decodes
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{path}: cannot decode the image ({err})") from err


@contextlib.contextmanager
def _open_raster(path: Path, bands: Sequence[int] | None, max_pixels: int | None) -> Iterator[Scene]:
    import rasterio
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.windows import Window

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)  # reads the header only
    except RasterioIOError as err:
        raise ValueError(f"{path}: not a raster GDAL can read ({first_line(err)})") from err
    with src:
        check_size(src.height, src.width, max_pixels, what=str(path))
        bands = list(bands) if bands is not None else ([1, 2, 3] if src.count >= 3 else [1])
        if len(bands) not in (1, 3) or not all(1 <= b <= src.count for b in bands):
            raise ValueError(f"{path} has {src.count} band(s); --bands needs 1 or 3 indices in 1..{src.count}, "
                             f"got {','.join(map(str, bands))}")
        complex_bands = [b for b in bands if src.dtypes[b - 1].startswith("complex")]
        if complex_bands:
            raise ValueError(f"{path}: band {complex_bands[0]} is complex-valued ({src.dtypes[complex_bands[0] - 1]}); "
                             "translate needs real-valued bands - convert it first (e.g. to amplitude)")
        palette = None
        if len(bands) == 1 and src.colorinterp[bands[0] - 1] == ColorInterp.palette:
            colormap = src.colormap(bands[0])
            palette = np.zeros((256, 3), np.uint8)
            for index, rgba in colormap.items():
                palette[index] = rgba[:3]
        limits = None
        if any(src.dtypes[b - 1] != "uint8" for b in bands):  # the scaling rule, with whole-band statistics
            scale = min(1.0, STATS_SIDE / max(src.height, src.width))
            shape = (len(bands), max(1, round(src.height * scale)), max(1, round(src.width * scale)))
            limits = stretch_limits(src.read(bands, out_shape=shape, masked=True, resampling=Resampling.nearest))

        def read_rows(y0: int, y1: int) -> np.ndarray:
            data = src.read(bands, window=Window(0, y0, src.width, y1 - y0))  # (C, rows, width)
            data = stretch(data, limits) if limits is not None else data
            if palette is not None:
                return palette[data[0]]
            return np.repeat(data[0][:, :, None], 3, axis=2) if len(bands) == 1 else data.transpose(1, 2, 0)

        georef = None
        if src.crs is not None or not src.transform.is_identity or src.gcps[0]:
            georef = {"crs": src.crs, "transform": src.transform, "gcps": src.gcps}
        yield Scene(src.height, src.width, read_rows, georef)


def write_scene(path: str | Path, height: int, width: int, rows: Iterable[tuple[int, np.ndarray]],
                georef: dict | None = None, palette: np.ndarray | None = None,
                class_names: Sequence[str] | None = None) -> Path:
    """Write (y0, (n, width, 3) uint8) strips covering a height x width image, atomically.

    A .tif / .tiff output is a GeoTIFF carrying `georef` (crs, transform, gcps) when given;
    .png / .jpg are written with Pillow (whole image in memory). With a `palette` ((classes, 3)
    uint8) the strips are (n, width) class ids, written as one band with the palette as its colour
    table (GeoTIFF, PNG) and, in a GeoTIFF, the class names as band metadata.
    """
    path = Path(path)
    fmt = output_format(path)
    if palette is not None and fmt == "JPEG":
        raise ValueError("a class raster needs a lossless format: use .tif or .png, not JPEG")
    bands = 1 if palette is not None else 3
    with atomic_path(path) as tmp:
        if fmt == "GTiff":
            import rasterio
            from rasterio.errors import NotGeoreferencedWarning
            from rasterio.windows import Window

            profile = {"driver": "GTiff", "height": height, "width": width, "count": bands, "dtype": "uint8",
                       "photometric": "RGB" if palette is None else "PALETTE", "compress": "deflate",
                       "zlevel": 1, "tiled": True, "blockxsize": 256, "blockysize": 256, "BIGTIFF": "IF_SAFER"}
            if georef and georef["crs"] is not None and not georef["transform"].is_identity:
                profile.update(crs=georef["crs"], transform=georef["transform"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(tmp, "w", **profile) as dst:
                    dst.update_tags(TIFFTAG_SOFTWARE=SOFTWARE)
                    if palette is not None:
                        dst.write_colormap(1, {i: (*map(int, c), 255) for i, c in enumerate(palette)})
                        if class_names:
                            dst.update_tags(1, **{f"CLASS_{i}": name for i, name in enumerate(class_names)})
                    for y0, strip in rows:
                        strip = strip[..., None] if palette is not None else strip
                        dst.write(strip.transpose(2, 0, 1), window=Window(0, y0, width, strip.shape[0]))
                    if georef and "crs" not in profile and georef["gcps"][0]:
                        dst.gcps = georef["gcps"]
        else:
            image = np.empty((height, width, 3) if palette is None else (height, width), np.uint8)
            for y0, strip in rows:
                image[y0:y0 + strip.shape[0]] = strip
            signature = {"quality": 95, "comment": SOFTWARE} if fmt == "JPEG" else {"pnginfo": _png_info()}
            picture = Image.fromarray(image)
            if palette is not None:
                picture = picture.convert("P")
                picture.putpalette(np.asarray(palette, np.uint8).flatten().tolist())
            picture.save(tmp, format=fmt, **signature)
    return path


def _png_info():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", SOFTWARE)
    return info


def written_by_rsgan(path: str | Path) -> bool:
    """Whether `path` is an image `write_scene` wrote (its software tag names rsgan_hub)."""
    path = Path(path)
    try:
        if is_tiff(path):
            import rasterio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rasterio.open(path) as src:
                    return src.tags().get("TIFFTAG_SOFTWARE") == SOFTWARE
        with Image.open(path) as image:
            found = image.info.get("comment") if image.format == "JPEG" else getattr(image, "text", {}).get("Software")
            return (found.decode(errors="replace") if isinstance(found, bytes) else found) == SOFTWARE
    except Exception:  # unreadable, not an image, a GDAL error of any kind: not ours
        return False
