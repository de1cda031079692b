"""`rsgan generate`: N scene PNGs and a grid.png from a DCGAN generator, streamed to disk."""

from __future__ import annotations

import argparse
import math

from . import add_overwrite, prepare_output

MAX_NUM_IMAGES = 100_000  # per run; file names have six digits, and --seed continues a run exactly
GRID_IMAGES = 64  # grid.png shows the first 64 images (8 x 8 at most)
BATCH = 64  # images generated, written and dropped at a time


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("generate", help="generate satellite scenes with a DCGAN generator",
                       description="Write N generated scenes (000000.png, ...) and grid.png (the first "
                                   f"{GRID_IMAGES}) to --out.")
    p.add_argument("--model", required=True, help="a saved model folder or a Hub repo id")
    p.add_argument("--num-images", type=int, default=16, help=f"how many images (default 16, at most {MAX_NUM_IMAGES:,})")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed + i")
    p.add_argument("--label", default=None, help="class name, for class-conditional models")
    p.add_argument("--truncation", type=float, default=None, help="truncation threshold for the latents (>= 0.05)")
    p.add_argument("--out", required=True, help="output folder (replaced atomically, only if rsgan wrote it)")
    add_overwrite(p)
    return p


def run(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from ..cli import UserError
    from ..io import atomic_dir, make_grid
    from ..models import DCGANGenerator
    from ..pipelines import check_seeds, check_truncation, generate_images

    if not 0 < args.num_images <= MAX_NUM_IMAGES:
        raise UserError(f"--num-images must be > 0 and at most {MAX_NUM_IMAGES:,} per run (continue with "
                        f"--seed SEED+{MAX_NUM_IMAGES}), got {args.num_images}")
    check_seeds(args.seed, args.seed + args.num_images - 1)
    check_truncation(args.truncation, "--truncation")
    out = prepare_output(args.out, {"the model folder": args.model}, args.overwrite)
    generator = DCGANGenerator.from_pretrained(args.model)
    first = []  # the images of grid.png; the others are written and dropped batch by batch
    with atomic_dir(out, "rsgan generate", args.overwrite) as tmp, \
            tqdm(total=args.num_images, unit="img", desc="generate", disable=None, leave=False) as bar:
        for start in range(0, args.num_images, BATCH):
            images = generate_images(generator, min(BATCH, args.num_images - start), args.seed + start, args.label,
                                     args.truncation)
            for i, image in enumerate(images, start):
                image.save(tmp / f"{i:06d}.png")
            first += images[:GRID_IMAGES - len(first)]
            bar.update(len(images))
        make_grid(first, columns=min(8, math.ceil(math.sqrt(len(first))))).save(tmp / "grid.png")
    print(f"wrote {args.num_images} images and grid.png to {out}")
