"""Where does a DCGAN's repeated texture come from? Inference-only probes of a generator, by test.

The bundled DCGAN's scenes carry a texture repeating every 16 px - the side of one cell of its 8x8
start map at 128 px. This measures that period's spectral peak - mean power at 8, 16, ..., 56 cycles
per 128 px (along x, and along y) over the mean power at the neighbouring frequencies; 1 is no peak -
on the generator's images, on real scenes, and on images rendered from altered start maps - and
beside it a frame's strength (`frame_strength`: the lines 0-7 px from the border against those
16-31 px in, in grey levels):

* constant start map (each channel's spatial mean in every cell): if the texture is drawn by the
  convolutions at each cell, identically, it stays; if it comes from the edges between unlike cells
  it goes;
* cells shuffled (the 64 cells of each start map in a random order): what the arrangement adds;
* zero start map: the response of the network to nothing - a frame from zero padding would show as a
  border unlike the centre;
* replicate padding, same weights: every convolution of the trained generator made to see the edge
  pixels repeated beyond the border instead of zeros. A frame that zero padding draws changes with
  it; one painted by the weights themselves (learnt from DiffAugment's zero-filled shifts, say) stays.

    python bench/dcgan_texture.py --model pretrained/dcgan --real ../shared/data/aid_train
"""

from __future__ import annotations

import argparse
import copy
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rsgan_hub import DCGANGenerator
from rsgan_hub.models.dcgan import RESIZE_MODES
from rsgan_hub.pipelines import latents


def period_peak(images: torch.Tensor, period: int = 16) -> float:
    """(N, 3, S, S) in [-1, 1] -> the spectral peak at `period` px and its harmonics (1: none)."""
    grey = images.mean(1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(grey).abs().square().mean(0)  # (ky, kx)
    step = grey.shape[-1] // period
    on = [step * m for m in range(1, period // 2)]
    off = [step * m + d for m in range(1, period // 2) for d in (-3, -2, -1, 1, 2, 3)]
    return ((power[:, on].mean() / power[:, off].mean() + power[on, :].mean() / power[off, :].mean()) / 2).item()


def frame_strength(images: torch.Tensor, depth: int = 8, interior: tuple[int, int] = (16, 32)) -> float:
    """(N, 3, S, S) in [-1, 1] -> how far the lines near the border (0 to depth - 1 px in) depart on
    average from the lines further in (`interior` px in), in 8-bit grey levels: the largest such
    departure of the mean over images and the four sides. A frame drawn inside every border shows
    here; on real scenes the border lines are like any other (a level or two)."""
    grey = (images.mean(1) + 1) * 127.5  # (N, S, S) in 0..255
    sides = torch.stack([grey, grey.flip(1), grey.transpose(1, 2), grey.transpose(1, 2).flip(1)])  # edge at row 0
    profile = sides.mean(dim=(0, 1, 3))  # mean grey of the line d px from the edge, (S,)
    inner = profile[interior[0]:interior[1]].mean()
    return (profile[:depth] - inner).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pretrained/dcgan")
    parser.add_argument("--real", default=None, help="a class-per-folder tree of real scenes, for the reference")
    parser.add_argument("--num-images", type=int, default=120)
    args = parser.parse_args()
    g = DCGANGenerator.from_pretrained(args.model).eval()
    if g.init_config["upsample"] not in RESIZE_MODES:
        raise SystemExit("the probes assume resize + conv upsampling (nearest or bilinear)")
    n = args.num_images
    z = latents(range(n), g.latent_dim)
    labels = torch.arange(n) % g.num_classes if g.num_classes else None
    with torch.no_grad():
        inputs = torch.cat([z, g.embed(labels)], 1) if labels is not None else z
        start = g.project(inputs).view(n, -1, 8, 8)  # (N, C0, 8, 8), as in DCGANGenerator.forward

        def render(x: torch.Tensor) -> torch.Tensor:
            return g.to_rgb(g.blocks(x))

        generated = render(start)
        constant = render(start.mean(dim=(2, 3), keepdim=True).expand_as(start))
        shuffled = render(start.flatten(2)[:, :, torch.randperm(64)].view_as(start))
        rows = [("generated", period_peak(generated), frame_strength(generated)),
                ("constant start map", period_peak(constant), frame_strength(constant)),
                ("start cells shuffled", period_peak(shuffled), frame_strength(shuffled))]
        replicated = copy.deepcopy(g)
        for conv in [m for m in replicated.modules() if isinstance(m, torch.nn.Conv2d)]:
            conv.padding_mode = "replicate"
        replicate = replicated.to_rgb(replicated.blocks(start))
        rows.append(("replicate padding", period_peak(replicate), frame_strength(replicate)))
        blank = render(torch.zeros_like(start))
        frame = (blank[..., :4, :].mean() - blank[..., 60:68, :].mean()).abs().item()
    if args.real:
        files = sorted(str(p) for p in Path(args.real).glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise SystemExit(f"--real {args.real}: no class folders of .jpg/.png scenes")
        random.Random(0).shuffle(files)
        real = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB").resize((g.image_size,) * 2)))
                            .permute(2, 0, 1).float() / 127.5 - 1 for f in files[:n]])
        rows.append(("real scenes", period_peak(real), frame_strength(real)))
    for name, peak, border in rows:
        print(f"{name:<22} period-16 peak {peak:.2f}   border lines vs inner lines {border:.1f} grey levels")
    print(f"zero start map: top rows vs centre rows differ by {frame:.3f} (of 2)")


if __name__ == "__main__":
    main()
