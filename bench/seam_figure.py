"""Tile seams with and without overlap: the bundled map2sat translator on the drawn example map
(`examples/drawn_map.png`, 512x512, so 2x2 tiles of 256 meet at x = 256 and y = 256), translated
twice by `translate_image` - overlap 0 (tiles side by side) and overlap 64 (the default: tiles
blended with sin^2 weights) - then the same 128x128 window centred on the tile border x = 256 at
y = 192 from both, enlarged 3x with nearest neighbour, side by side with the input. There the
input is one field on both sides of the border (plus a road and buildings), so an edge down the
middle of the window is the tiling's, not the map's.

    OMP_NUM_THREADS=1 python bench/seam_figure.py        # writes bench/figures/seams.png

It also prints, over the window's rows, the mean absolute step between the two pixel columns
either side of x = 256 and, for scale, the same step averaged over all other column pairs. Only
drawn examples are used: the training imagery has no stated licence.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rsgan_hub import Pix2PixGenerator, translate_image

ROOT = Path(__file__).resolve().parents[1]
TILE, BORDER, CENTRE_Y, CROP, ZOOM = 256, 256, 192, 128, 3
ROWS = slice(CENTRE_Y - CROP // 2, CENTRE_Y + CROP // 2)  # the window's rows


def column_step(image: np.ndarray, x: int) -> float:
    """Mean |difference| (8-bit levels) between pixel columns x - 1 and x."""
    return float(np.abs(image[:, x].astype(np.int16) - image[:, x - 1].astype(np.int16)).mean())


def interior_step(image: np.ndarray) -> float:
    """The same step averaged over every column pair except the tile border."""
    steps = np.abs(np.diff(image.astype(np.int16), axis=1)).mean(axis=(0, 2))
    return float(np.delete(steps, BORDER - 1).mean())


def panel(image: Image.Image, label: str, font: ImageFont.ImageFont) -> Image.Image:
    """The window around the tile border, enlarged, under a one-line label."""
    half = CROP // 2
    crop = image.crop((BORDER - half, CENTRE_Y - half, BORDER + half, CENTRE_Y + half))
    crop = crop.resize((CROP * ZOOM, CROP * ZOOM), Image.NEAREST)
    out = Image.new("RGB", (crop.width, crop.height + 30), "white")
    out.paste(crop, (0, 30))
    ImageDraw.Draw(out).text((4, 6), label, fill="black", font=font)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "pretrained" / "map2sat"), help="a map2sat or sat2map folder")
    parser.add_argument("--input", default=str(ROOT / "examples" / "drawn_map.png"), help="a drawn example")
    parser.add_argument("--out", default=str(ROOT / "bench" / "figures" / "seams.png"))
    args = parser.parse_args()

    model = Pix2PixGenerator.from_pretrained(args.model)
    source = Image.open(args.input).convert("RGB")
    if min(source.size) < 2 * TILE:  # at least two tiles each way, so there is a border to look at
        source = source.resize((2 * TILE, 2 * TILE), Image.BICUBIC)
    # fp32: the same figure on every CPU
    plain = translate_image(model, source, tile=TILE, overlap=0, precision="fp32")
    blended = translate_image(model, source, tile=TILE, overlap=64, precision="fp32")
    for name, image in (("overlap 0", plain), ("overlap 64", blended)):
        array = np.asarray(image)[ROWS]
        print(f"{name}: step across x = {BORDER}: {column_step(array, BORDER):.1f} levels; "
              f"other columns: {interior_step(array):.1f}")

    font = ImageFont.load_default(size=17)
    panels = [panel(source, "input: drawn map", font),
              panel(plain, "overlap 0: tile border visible", font),
              panel(blended, "overlap 64 (default)", font)]
    gap = 8
    figure = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for p in panels:
        figure.paste(p, (x, 0))
        x += p.width + gap
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"wrote {args.out} ({figure.width}x{figure.height}); window {CROP}x{CROP} around ({BORDER}, {CENTRE_Y}), {ZOOM}x")


if __name__ == "__main__":
    main()
