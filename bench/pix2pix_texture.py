"""Where do a map -> satellite U-Net's dot grid and border frame come from? Inference-only probes, by test.

Measured on the held-out map tiles of a pairs dataset, translated one 256 px tile at a time:

* the spectral peak at each period P = 2, 4, 8, 16, 32 px (mean power at the multiples of 256 / P
  cycles per tile, along x and along y, over the mean power at the neighbouring frequencies; 1 is
  no peak) of the translations and of the real satellite tiles - a regular dot grid is a peak;
* the same with each suspect switched: the plain model against its inference copy (the
  matrix-product and phase layers, `models/fast.py`) and dropout on (the pix2pix paper's test-time
  noise) against off. (A featureless input tells nothing here: instance norm maps it to zero.) The
  upsampling itself is tested by training: `bench/pix2pix_recipes.py --direction map2sat` has a
  resize + conv decoder candidate beside the transposed ones, and this script scores each;
* the frame: the mean absolute difference between the outermost 4 px ring and the ring 8-12 px
  inside, on translations and on real tiles (zero padding shows as a ring unlike its neighbour).

    python bench/pix2pix_texture.py --model pretrained/map2sat --dataset /tmp/p2p/mumbai
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rsgan_hub import Pix2PixGenerator
from rsgan_hub.data.load import load_pair_dataset
from rsgan_hub.models.fast import inference_copy

PERIODS = (2, 4, 8, 16, 32)


def period_peak(images: torch.Tensor, period: int) -> float:
    """(N, 3, S, S) -> the spectral peak at `period` px and its harmonics (1: none)."""
    grey = images.float().mean(1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(grey).abs().square().mean(0)
    side = grey.shape[-1]
    step = side // period
    on = [step * m for m in range(1, period // 2 + (period == 2))]  # period 2: the Nyquist line itself
    off = sorted({(k + d) % side for k in on for d in (-3, -2, -1, 1, 2, 3)} - set(on))
    return ((power[:, on].mean() / power[:, off].mean() + power[on, :].mean() / power[off, :].mean()) / 2).item()


def frame(images: torch.Tensor) -> float:
    """Mean |outer 4 px ring - the ring 8-12 px inside| over images, in 0..255 units."""
    x = (images.float() + 1) * 127.5

    def ring(a: int, b: int) -> torch.Tensor:
        inner = x[..., a:x.shape[-2] - a, a:x.shape[-1] - a]
        keep = torch.ones(inner.shape[-2:], dtype=torch.bool)
        keep[b - a:inner.shape[-2] - (b - a), b - a:inner.shape[-1] - (b - a)] = False
        return inner[..., keep].mean(-1)  # (N, 3)

    return (ring(0, 4) - ring(8, 12)).abs().mean().item()


def to_tensor(images) -> torch.Tensor:
    """PIL images -> (N, 3, H, W) in [-1, 1]."""
    arrays = [torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1) for im in images]
    return torch.stack(arrays).float() / 127.5 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pretrained/map2sat")
    parser.add_argument("--dataset", required=True, help="a `rsgan dataset pairs` folder (its test split is used)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-tiles", type=int, default=48)
    args = parser.parse_args()
    g = Pix2PixGenerator.from_pretrained(args.model).eval()
    pairs = load_pair_dataset(args.dataset, split=args.split).select(range(args.num_tiles))
    maps, real = to_tensor(pairs["map"]), to_tensor(pairs["satellite"])  # (N, 3, 256, 256) each
    if g.direction == "sat2map":
        maps, real = real, maps
    with torch.no_grad():
        plain = torch.cat([g(maps[i:i + 8]) for i in range(0, len(maps), 8)])
        fast_copy = inference_copy(g, "fp32")
        fast = torch.cat([fast_copy(maps[i:i + 8]) for i in range(0, len(maps), 8)])
        for m in g.modules():
            if isinstance(m, torch.nn.Dropout):
                m.train()
        dropped = torch.cat([g(maps[i:i + 8]) for i in range(0, len(maps), 8)])
        g.eval()
    rows = {"real tiles": real, "translations (plain, eval)": plain, "inference copy": fast,
            "dropout on": dropped}
    print("| images | " + " | ".join(f"peak @ {p} px" for p in PERIODS) + " | frame |")
    print("|---" * (len(PERIODS) + 2) + "|")
    for name, images in rows.items():
        peaks = " | ".join(f"{period_peak(images, p):.2f}" for p in PERIODS)
        print(f"| {name} | {peaks} | {frame(images):.1f} |")
    print(f"plain vs inference copy: max |diff| {(plain - fast).abs().max().item() * 127.5:.2f} (0..255)")


if __name__ == "__main__":
    main()
