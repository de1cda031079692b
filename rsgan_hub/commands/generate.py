"""`rsgan generate`: N scene PNGs and a grid.png from a DCGAN generator."""

from __future__ import annotations

import argparse
import math


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("generate", help="generate satellite scenes with a DCGAN generator",
                       description="Write N generated scenes (000000.png, ...) and grid.png to --out.")
    p.add_argument("--model", required=True, help="a saved model folder or a Hub repo id")
    p.add_argument("--num-images", type=int, default=16, help="how many images (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed + i")
    p.add_argument("--label", default=None, help="class name, for class-conditional models")
    p.add_argument("--truncation", type=float, default=None, help="truncation threshold for the latents")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    return p


def run(args: argparse.Namespace) -> None:
    from ..cli import UserError
    from ..io import atomic_dir, make_grid
    from ..models import DCGANGenerator
    from ..pipelines import generate_images

    if args.num_images <= 0:
        raise UserError(f"--num-images must be > 0, got {args.num_images}")
    generator = DCGANGenerator.from_pretrained(args.model)
    images = generate_images(generator, args.num_images, args.seed, args.label, args.truncation)
    with atomic_dir(args.out) as tmp:
        for i, image in enumerate(images):
            image.save(tmp / f"{i:06d}.png")
        make_grid(images, columns=min(8, math.ceil(math.sqrt(len(images))))).save(tmp / "grid.png")
    print(f"wrote {len(images)} images and grid.png to {args.out}")
