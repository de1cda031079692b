"""Draw the example inputs the app ships: a satellite-like scene and the matching map, both drawn by
code from one random layout (fields, a river, roads, buildings), so no dataset image - nor anything
derived from one - is ever in the repository. With `--dcgan FOLDER` it also saves scenes generated
by our own DCGAN (its output is ours to ship); with `--card-sample FOLDER` it writes a translator's
card picture, FOLDER/samples.png: the drawn input beside the model's translation of it; with
`--class-grid FOLDER` a conditional DCGAN's README picture, FOLDER/classes.jpg: one row of eight
scenes per class for a dozen classes.

    python examples/make_examples.py            # rewrites examples/*.png
    python examples/make_examples.py --card-sample pretrained/sat2map
    python examples/make_examples.py --class-grid pretrained/dcgan
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
# (satellite colour, map colour) per land use; map colours in the style of web map renderings.
FIELD_COLOURS = [((86, 110, 58), (205, 235, 176)), ((122, 118, 80), (238, 240, 213)),
                 ((70, 92, 50), (173, 209, 158)), ((140, 128, 98), (242, 239, 233))]
WATER = ((48, 70, 80), (170, 211, 223))
ROAD = ((150, 148, 140), (255, 255, 255))
ROAD_EDGE = ((110, 108, 100), (200, 196, 188))
ROOFS = [(180, 90, 70), (200, 200, 195), (160, 150, 140)]
BUILDING_MAP = (217, 208, 201)


def draw_pair(seed: int = 0, size: int = 512) -> tuple[Image.Image, Image.Image]:
    """A (satellite-like scene, map) pair of size x size RGB images from one random layout."""
    rng = np.random.default_rng(seed)
    scene, drawn_map = Image.new("RGB", (size, size)), Image.new("RGB", (size, size))
    sat, mp = ImageDraw.Draw(scene), ImageDraw.Draw(drawn_map)
    # fields: a jittered grid of rectangles
    step = size // 4
    for y in range(0, size, step):
        for x in range(0, size, step):
            s, m = FIELD_COLOURS[rng.integers(len(FIELD_COLOURS))]
            box = [x, y, x + step, y + step]
            sat.rectangle(box, fill=s)
            mp.rectangle(box, fill=m)
    # a river: a smooth random curve from top to bottom
    ys = np.linspace(-20, size + 20, 12)
    xs = size * 0.5 + np.cumsum(rng.normal(0, size * 0.04, len(ys)))
    river = list(zip(xs.tolist(), ys.tolist()))
    width = max(6, size // 24)
    sat.line(river, fill=WATER[0], width=width, joint="curve")
    mp.line(river, fill=WATER[1], width=width, joint="curve")
    # roads: two straight ones across the scene
    for horizontal in (True, False):
        c = int(rng.integers(size // 5, 4 * size // 5))
        line = [(0, c), (size, c)] if horizontal else [(c, 0), (c, size)]
        for d, width in ((ROAD_EDGE, max(5, size // 40)), (ROAD, max(3, size // 64))):
            sat.line(line, fill=d[0], width=width)
            mp.line(line, fill=d[1], width=width)
    # buildings: small rectangles, away from the river
    for _ in range(size // 8):
        x, y = rng.integers(0, size - 20, 2)
        w, h = rng.integers(6, 18, 2)
        if abs(x - np.interp(y, ys, xs)) < width * 2:
            continue
        box = [int(x), int(y), int(x + w), int(y + h)]
        sat.rectangle(box, fill=ROOFS[rng.integers(len(ROOFS))])
        mp.rectangle(box, fill=BUILDING_MAP, outline=(196, 182, 171))
    # texture and a little blur make the scene look photographed rather than drawn
    noise = rng.normal(0, 10, (size, size, 3))
    pixels = np.clip(np.asarray(scene, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    scene = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.8))
    return scene, drawn_map


def card_sample(folder: Path) -> None:
    """folder/samples.png: the drawn input of the model's direction | its translation (fp32, any CPU alike)."""
    from rsgan_hub import Pix2PixGenerator, translate_image

    model = Pix2PixGenerator.from_pretrained(folder)
    source = Image.open(HERE / ("drawn_scene.png" if model.direction == "sat2map" else "drawn_map.png")).convert("RGB")
    out = translate_image(model, source, precision="fp32")
    pair = Image.new("RGB", (2 * source.width, source.height))
    pair.paste(source, (0, 0))
    pair.paste(out, (source.width, 0))
    pair.save(folder / "samples.png")
    print(f"wrote {folder / 'samples.png'}")


GRID_CLASSES = ["Forest", "Desert", "Farmland", "River", "Beach", "DenseResidential", "SparseResidential",
                "Industrial", "Airport", "Parking", "Mountain", "StorageTanks"]


def class_grid_picture(folder: Path) -> None:
    """folder/classes.jpg: eight scenes (seeds 0-7) in each of GRID_CLASSES, one row per class."""
    from rsgan_hub import DCGANGenerator, class_grid
    from rsgan_hub.io import atomic_path

    generator = DCGANGenerator.from_pretrained(folder)
    classes = [c for c in GRID_CLASSES if c in generator.class_names] or generator.class_names[:12]
    with atomic_path(folder / "classes.jpg") as tmp:
        class_grid(generator, classes, per_class=8, seed=0).save(tmp, format="JPEG", quality=90)
    print(f"wrote {folder / 'classes.jpg'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dcgan", default=None, help="also save 4 scenes generated by this DCGAN folder / repo id")
    p.add_argument("--card-sample", default=None, metavar="FOLDER",
                   help="write FOLDER/samples.png: the drawn scene (sat2map) or map (map2sat) and its translation")
    p.add_argument("--class-grid", default=None, metavar="FOLDER",
                   help="write FOLDER/classes.jpg: a conditional DCGAN's scenes, one row per class (12 classes)")
    p.add_argument("--out", default=str(HERE), help="output folder (default: examples/)")
    args = p.parse_args()
    if args.card_sample:
        card_sample(Path(args.card_sample))
        return
    if args.class_grid:
        class_grid_picture(Path(args.class_grid))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene, drawn_map = draw_pair(seed=0)
    scene.save(out / "drawn_scene.png")  # the app offers scenes for sat2map ...
    drawn_map.save(out / "drawn_map.png")  # ... and maps for map2sat, by file name
    if args.dcgan:
        from rsgan_hub import DCGANGenerator, generate_images

        generator = DCGANGenerator.from_pretrained(args.dcgan)
        for i, image in enumerate(generate_images(generator, 4, seed=0, label=generator.class_names[0]
                                                  if generator.num_classes else None)):
            image.save(out / f"generated_scene_seed{i}.png")
    print(f"wrote examples to {out}")


if __name__ == "__main__":
    main()
