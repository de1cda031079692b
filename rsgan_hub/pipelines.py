"""Inference: scene generation with a `DCGANGenerator` (Radford et al. 2016) and whole-scene
translation with a pix2pix `Pix2PixGenerator` (Isola et al. 2017).

Seeds: image `i` of a call with `seed=s` is drawn from its own seed `s + i`, so any single image
can be regenerated from its seed alone, whatever the batch it was made in. A latent walk moves
between the latents of two seeds along the great circle (spherical interpolation), which keeps
every frame at the norm a Gaussian latent typically has; linear interpolation would pass through
low-norm latents that give washed-out frames.

Translation works on images of any size by overlapping, smoothly blended tiles (`tiling.py`);
files go through `geo.py` (PNG / JPEG / TIFF / GeoTIFF, georeferencing kept, atomic writes).

Precision: "fp32", or "bf16" - an inference copy of the network with bf16 weights and activations,
channels-last, several times faster on CPUs with native bf16 (AVX512-BF16 / AMX) and many times
slower on others, which emulate it - or "auto" (bf16 where the CPU has it natively, else fp32).
Translation defaults to "auto", generation to "fp32" (bit-reproducible).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .geo import DEFAULT_MAX_PIXELS, check_size, open_scene, output_format, to_rgb8, write_scene
from .hardware import bf16_supported, warn_emulated_bf16
from .io import label_rows, make_grid, tensor_to_pil
from .models import DCGANGenerator, Pix2PixGenerator
from .models.fast import inference_copy, tile_chunk
from .tiling import check_tiling, translate_rows

PRECISIONS = ("auto", "bf16", "fp32")
DIRECTIONS = ("sat2map", "map2sat")
Progress = Callable[[int, int], None]


MIN_TRUNCATION = 0.05  # below it almost every draw is rejected: |z| < 0.05 holds for 4 % of N(0, 1) draws
MAX_REDRAWS = 1000  # at t = 0.05 a component is still outside after 1000 redraws with probability 1e-18
SEED_RANGE = (-2**63, 2**63 - 1)  # seeds are stored as int64 (the `seed` column of `rsgan synthesize`)


def check_truncation(truncation: float | None, name: str = "truncation") -> None:
    """ValueError unless `truncation` is None (off) or a finite number >= MIN_TRUNCATION."""
    if truncation is not None and not MIN_TRUNCATION <= truncation < float("inf"):
        raise ValueError(f"{name} must be at least {MIN_TRUNCATION} (or off), got {truncation}")


def check_seeds(first: int, last: int) -> None:
    """ValueError unless every seed first..last fits in a signed 64-bit integer."""
    low, high = SEED_RANGE
    if first < low or last > high:
        raise ValueError(f"seeds must lie in {low}..{high}; this run would use seeds {first}..{last}")


def latents(seeds: Sequence[int], latent_dim: int, truncation: float | None = None) -> torch.Tensor:
    """(len(seeds), latent_dim) standard-normal latents, one reproducible row per seed.

    With `truncation` t (>= MIN_TRUNCATION), components with |z| > t are redrawn until all lie
    within t (the truncation trick: less variety, more typical images); after MAX_REDRAWS rounds the
    rare survivors are clamped to +-t, so the work is bounded for every t.
    """
    check_truncation(truncation)
    rows = []
    for seed in seeds:
        check_seeds(seed, seed)
        rng = torch.Generator().manual_seed(int(seed))
        z = torch.randn(latent_dim, generator=rng)
        if truncation is not None:
            outside = (z.abs() > truncation).nonzero().squeeze(1)  # redrawn in index order, only these
            for _ in range(MAX_REDRAWS):
                if not len(outside):
                    break
                z[outside] = torch.randn(len(outside), generator=rng)
                outside = outside[z[outside].abs() > truncation]
            z.clamp_(-truncation, truncation)
        rows.append(z)
    return torch.stack(rows)


def resolve_label(generator: DCGANGenerator, label: str | int | None) -> int | None:
    """Class index for a name or index; None for unconditional models. ValueError when unknown."""
    if not generator.num_classes:
        if label not in (None, ""):
            raise ValueError(f"the model is unconditional; it has no class {label!r}")
        return None
    if label in (None, ""):
        raise ValueError(f"the model is class-conditional: choose one of {', '.join(generator.class_names)}")
    if isinstance(label, int):
        if not 0 <= label < generator.num_classes:
            raise ValueError(f"class index {label} out of range 0..{generator.num_classes - 1}")
        return label
    return generator.class_index(label)


def resolve_precision(precision: str) -> str:
    """"bf16" or "fp32" for "auto" | "bf16" | "fp32" ("auto": bf16 only where the CPU has it natively,
    `rsgan_hub.hardware`; an explicit "bf16" elsewhere is kept, with a warning that it is slow)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    if precision == "bf16" and not bf16_supported():
        warn_emulated_bf16("use precision 'auto' or 'fp32'", stacklevel=4)
    return precision


@torch.inference_mode()
def generate_images(
    generator: DCGANGenerator,
    num_images: int = 16,
    seed: int = 0,
    label: str | int | None = None,
    truncation: float | None = None,
    batch_size: int = 64,
    precision: str = "fp32",
) -> list[Image.Image]:
    """Generate `num_images` PIL images with seeds `seed, seed + 1, ...`.

    Args:
        generator: a DCGANGenerator (put in eval mode here).
        num_images (`int`, *optional*, defaults to 16): how many images.
        seed (`int`, *optional*, defaults to 0): seed of the first image.
        label (`str` or `int`, *optional*): class name or index, required for conditional models.
        truncation (`float`, *optional*): truncation threshold for the latents.
        batch_size (`int`, *optional*, defaults to 64): images per forward pass.
        precision (`str`, *optional*, defaults to "fp32"): "fp32" (the model itself: the same pixels
            for a seed whatever the batch), "auto" (the fastest this CPU has: the bf16 inference copy
            with native bf16, the fp32 one - folded weights, channels-last - elsewhere) or "bf16".
    """
    if num_images <= 0:
        raise ValueError(f"num_images must be > 0, got {num_images}")
    check_seeds(seed, seed + num_images - 1)
    check_truncation(truncation)
    class_index = resolve_label(generator, label)
    generator.eval()
    images = []
    for start in range(0, num_images, batch_size):
        seeds = range(seed + start, seed + min(start + batch_size, num_images))
        z = latents(seeds, generator.latent_dim, truncation)
        images += render(generator, z, class_index, precision)
    return images


def class_grid(
    generator: DCGANGenerator,
    classes: Sequence[str | int] | None = None,
    per_class: int = 8,
    seed: int = 0,
    side: int | None = None,
    truncation: float | None = None,
) -> Image.Image:
    """One row per class of a class-conditional generator: `per_class` scenes (seeds `seed` ...
    `seed + per_class - 1`, the same latents in every row, so a column shows one latent across the
    classes), the class name left of its row, each scene resized to `side` px (default: the model's
    size). `classes`: names or indices (default: all). The card's and the README's sample picture."""
    if not generator.num_classes:
        raise ValueError("class_grid needs a class-conditional model; this one is unconditional")
    if per_class <= 0:
        raise ValueError(f"per_class must be > 0, got {per_class}")
    indices = [resolve_label(generator, c) for c in (range(generator.num_classes) if classes is None else classes)]
    if not indices:
        raise ValueError("class_grid needs at least one class")
    side = side or generator.image_size
    scenes = [scene if scene.width == side else scene.resize((side, side), Image.Resampling.LANCZOS)
              for index in indices
              for scene in generate_images(generator, per_class, seed=seed, label=index, truncation=truncation)]
    return label_rows(make_grid(scenes, columns=per_class), [generator.class_names[i] for i in indices], side)


def render(generator: DCGANGenerator, z: torch.Tensor, class_index: int | None = None,
           precision: str = "fp32") -> list[Image.Image]:
    """PIL images for latents z (B, latent_dim), all of class `class_index` (None: unconditional);
    "fp32" runs the model itself, "auto" / "bf16" its inference copy (`prepare`)."""
    labels = None if class_index is None else torch.full((len(z),), class_index, dtype=torch.long)
    if precision == "fp32" and getattr(generator, "inference_precision", None) is None:
        return [tensor_to_pil(x) for x in generator(z, labels)]
    fast = prepare(generator, precision)
    dtype = next(fast.parameters()).dtype
    return [tensor_to_pil(x) for x in fast(z.to(dtype), labels).float()]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between vectors a, b (D,) at fractions t (N,) -> (N, D)."""
    omega = torch.arccos(torch.clamp(torch.dot(a / a.norm(), b / b.norm()), -1.0, 1.0))
    t = t[:, None]
    if omega.abs() < 1e-6:  # (anti)parallel: fall back to a straight line
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


@torch.inference_mode()
def latent_walk(
    generator: DCGANGenerator,
    seed_a: int,
    seed_b: int,
    num_frames: int = 16,
    label: str | int | None = None,
    truncation: float | None = None,
    precision: str = "fp32",
) -> list[Image.Image]:
    """`num_frames` PIL frames from the image of `seed_a` to the image of `seed_b` (both included),
    by spherical interpolation of their latents; frame 0 is `generate_images(seed=seed_a)[0]`."""
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    class_index = resolve_label(generator, label)
    generator.eval()
    ends = latents([seed_a, seed_b], generator.latent_dim, truncation)
    z = slerp(ends[0], ends[1], torch.linspace(0, 1, num_frames))
    z[0], z[-1] = ends[0], ends[1]  # exact end points, free of rounding in sin / arccos
    return render(generator, z, class_index, precision)


# ---- translation ------------------------------------------------------------------------------
def check_translator(generator: torch.nn.Module, direction: str | None = None) -> None:
    """TypeError for a model that is not a pix2pix generator, ValueError for the wrong direction."""
    if not isinstance(generator, Pix2PixGenerator):
        raise TypeError(f"translation needs a Pix2PixGenerator, got a {type(generator).__name__}")
    if direction is not None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'sat2map' or 'map2sat', got {direction!r}")
        if generator.direction and generator.direction != direction:
            raise ValueError(f"the model translates {generator.direction}, not {direction}")


def prepare(generator: torch.nn.Module, precision: str = "auto") -> torch.nn.Module:
    """The generator ready for fast inference at `precision` ("auto" resolved for this CPU): its
    `fast.inference_copy`, or `generator` itself when it already is a copy of that precision. Prepare
    once and pass the copy to `translate_image` / `translate_file` / `generate_images` to skip the
    copy on every call (the app does)."""
    resolved = resolve_precision(precision)
    prepared = getattr(generator, "inference_precision", None)
    if prepared == resolved:
        return generator
    if prepared is not None:
        raise ValueError(f"this is a {prepared} inference copy; prepare the model itself for {resolved}")
    return inference_copy(generator, resolved)


def tile_function(generator: Pix2PixGenerator, precision: str = "auto") -> Callable[[torch.Tensor], torch.Tensor]:
    """(B, 3, H, W) float32 tiles -> (B, 3, H, W) float32 predictions at the requested precision,
    run in the fewest even chunks of at most `tile_chunk` tiles. A legend generator's predictions
    are its class probabilities, (B, classes, H, W), so that tiles blend probabilities."""
    fast = prepare(generator, precision)
    dtype = next(fast.to_image.parameters()).dtype

    def predict(part: torch.Tensor) -> torch.Tensor:
        part = part.to(dtype).contiguous(memory_format=torch.channels_last)
        if generator.predicts_classes:
            return torch.softmax(fast(part, output="logits"), dim=1, dtype=torch.float32)  # one pass from bf16
        return fast(part).float()

    def run(tiles: torch.Tensor) -> torch.Tensor:
        chunks = -(-len(tiles) // tile_chunk(generator, max(tiles.shape[-2:]), dtype))
        return torch.cat([predict(part) for part in tiles.tensor_split(chunks)])  # as even as possible: 16 -> 6, 5, 5

    return run


def _translated_rows(generator: Pix2PixGenerator, rows, classes: bool):
    """translate_rows' strips as RGB (n, width, 3) uint8, or with classes=True as class ids
    (n, width) uint8. A legend generator's blended probabilities give each pixel its most likely
    class, drawn in the palette colour (a crisp map); `classes` needs a legend generator (`check_classes`)."""
    if not generator.predicts_classes:
        yield from rows
        return
    # (n, width) class ids; torch's argmax along the short class axis is faster than numpy's (measured
    # by bench/legend_head.py), and np.take than fancy indexing for the palette below.
    ids = ((y0, torch.from_numpy(strip).argmax(dim=-1).to(torch.uint8).numpy()) for y0, strip in rows)
    if classes:
        yield from ids
        return
    palette = palette_colours(generator)
    outlines = {generator.class_names.index(name): np.asarray(colour, np.uint8)
                for name, colour in generator.outlines.items()}
    for y0, strip, above, below in _with_neighbour_rows(ids):
        drawn = np.take(palette, strip, axis=0)  # (n, width, 3)
        for c, colour in outlines.items():
            drawn[_border(strip, above, below, c)] = colour
        yield y0, drawn


def _with_neighbour_rows(strips):
    """(y0, ids) strips -> (y0, ids, the row above, the row below): each strip with its neighbours'
    adjacent rows (its own edge row at the image's top and bottom), one strip later."""
    previous, above = None, None
    for y0, strip in strips:
        if previous is not None:
            yield previous[0], previous[1], above, strip[0]
            above = previous[1][-1]
        else:
            above = strip[0]
        previous = (y0, strip)
    if previous is not None:
        yield previous[0], previous[1], above, previous[1][-1]


def _border(ids: np.ndarray, above: np.ndarray, below: np.ndarray, c: int) -> np.ndarray:
    """(n, width) bool: the pixels of class c with a 4-neighbour of another class (the image edge
    does not count: the region may go on beyond it)."""
    padded = np.vstack([above[None], ids, below[None]])
    padded = np.pad(padded, ((0, 0), (1, 1)), mode="edge") == c  # (n + 2, width + 2)
    inner = padded[1:-1, 1:-1]
    return inner & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])


def check_classes(generator: Pix2PixGenerator, classes: bool) -> None:
    """ValueError when class ids are asked of a model that draws RGB."""
    if classes and not generator.predicts_classes:
        raise ValueError("this model draws RGB maps, not legend classes: class rasters need a legend model "
                         "(one trained with train/pix2pix.py --legend)")


def palette_colours(generator: Pix2PixGenerator) -> np.ndarray:
    """(classes, 3) uint8 palette of a legend generator."""
    return np.asarray(generator.init_config["palette"], dtype=np.uint8)


def translate_image(
    generator: Pix2PixGenerator,
    image: Image.Image | np.ndarray,
    tile: int = 256,
    overlap: int = 64,
    batch_size: int = 8,
    progress: Progress | None = None,
    precision: str = "auto",
    classes: bool = False,
) -> Image.Image | np.ndarray:
    """Translate an image of any size with overlapping blended tiles; returns the same type and size.

    Args:
        generator: a Pix2PixGenerator.
        image: a PIL image (any mode; EXIF orientation is *not* applied here) or an (H, W, 3) uint8 array.
        tile (`int`, *optional*, defaults to 256): tile side, the size the model was trained at.
        overlap (`int`, *optional*, defaults to 64): pixels shared by neighbouring tiles, blended smoothly.
        batch_size (`int`, *optional*, defaults to 8): tiles per forward pass.
        progress (`callable`, *optional*): called as progress(done_tiles, total_tiles).
        precision (`str`, *optional*, defaults to "auto"): "auto", "bf16" or "fp32".
        classes (`bool`, *optional*, defaults to False): a legend model's class ids instead of the map:
            an (H, W) uint8 array, or for a PIL input a palette ("P") image in the legend's colours.
    """
    check_translator(generator)
    check_classes(generator, classes)
    check_tiling(tile, overlap, batch_size)
    if isinstance(image, Image.Image):
        array = to_rgb8(image)
    elif isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        array = image
    else:
        raise ValueError("image must be a PIL image or an (H, W, 3) uint8 array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    height, width = array.shape[:2]
    check_size(height, width, None)
    out = np.empty((height, width) if classes else (height, width, 3), np.uint8)
    with torch.inference_mode():
        rows = translate_rows(tile_function(generator, precision), height, width, lambda y0, y1: array[y0:y1],
                              tile, overlap, batch_size, progress, **blending(generator))
        for y0, strip in _translated_rows(generator, rows, classes):
            out[y0:y0 + len(strip)] = strip
    if not isinstance(image, Image.Image):
        return out
    result = Image.fromarray(out)
    if classes:
        result = result.convert("P")
        result.putpalette(palette_colours(generator).flatten().tolist())
    return result


def blending(generator: Pix2PixGenerator) -> dict:
    """`translate_rows` options for the generator: RGB as 8-bit, or a legend's class probabilities
    as floats (so the most likely class is not lost to rounding)."""
    if generator.predicts_classes:
        return {"channels": len(generator.palette), "as_uint8": False}
    return {}


def translate_file(
    generator: Pix2PixGenerator,
    input_path: str | Path,
    output_path: str | Path,
    direction: str | None = None,
    tile: int = 256,
    overlap: int = 64,
    batch_size: int = 8,
    bands: Sequence[int] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
    precision: str = "auto",
    classes: bool = False,
) -> Path:
    """Translate an image file (PNG / JPEG / TIFF / GeoTIFF) into `output_path`, written atomically.

    The output format follows the output suffix; a GeoTIFF output of a georeferenced input keeps
    its CRS, transform and size. Large rasters stream strip by strip (bounded memory). `direction`
    ("sat2map" / "map2sat"), when given, must match the model's. `bands` and the 16-bit scaling
    rule: see `rsgan_hub.geo`. `max_pixels` is checked before decoding. `classes`: a legend model's
    class ids as a one-band raster with the legend as its colour table (GeoTIFF or PNG), for GIS.
    """
    check_translator(generator, direction)
    check_tiling(tile, overlap, batch_size)
    check_classes(generator, classes)
    output_format(output_path)  # fail on a bad suffix before any work (write_scene refuses a JPEG class raster)
    with open_scene(input_path, bands, max_pixels) as scene, torch.inference_mode():
        rows = translate_rows(tile_function(generator, precision), scene.height, scene.width, scene.read_rows,
                              tile, overlap, batch_size, progress, **blending(generator))
        return write_scene(output_path, scene.height, scene.width, _translated_rows(generator, rows, classes),
                           scene.georef, palette=palette_colours(generator) if classes else None,
                           class_names=generator.class_names if classes else None)
