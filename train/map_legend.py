"""Learn a map legend: k-means (Lloyd 1982, k-means++ seeding of Arthur & Vassilvitskii 2007) on the
colours of the map tiles of a paired dataset, printed as colour centres with their share of pixels.

    python train/map_legend.py --dataset ../shared/data/mumbai_train --split train

This is how `rsgan_hub.evaluation.translation.MAP_LEGEND` was made (k = 10, 300 tiles x 3,000 pixels):
the centres were named by eye (background, building, road, water, zone, labels) and each class's mean
satellite colour, printed last, recorded for the map -> satellite baseline. The near-white classes are
a few levels apart, so the centres depend on the sample; check the printed shares against the legend.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rsgan_hub.data import load_pair_dataset
from rsgan_hub.evaluation.classify import to_uint8
from rsgan_hub.evaluation.translation import LEGEND_NAMES, MAP_LEGEND, legend_classes
from rsgan_hub.io import pil_to_tensor
from rsgan_hub.training import flag, parse_config


@dataclass
class LegendConfig:
    """Cluster the map colours of a paired dataset into a legend."""

    preset: str = flag("default", "only 'default'")
    dataset: str = flag("", "paired dataset: Hub id, `rsgan dataset pairs` folder or side-by-side folder")
    split: str = flag("train", "split whose maps are clustered")
    clusters: int = flag(10, "k of k-means")
    tiles: int = flag(300, "tiles sampled")
    pixels_per_tile: int = flag(3000, "pixels sampled per tile")
    iterations: int = flag(40, "Lloyd iterations")
    seed: int = flag(0, "seed of the sampling and the k-means++ seeding")


def kmeans(points: torch.Tensor, k: int, iterations: int,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3) points -> (k, 3) centres and (N,) assignments; k-means++ seeding, then Lloyd iterations."""
    centres = points[torch.randint(len(points), (1,), generator=generator)]
    for _ in range(k - 1):
        nearest = torch.cdist(points, centres).min(dim=1).values.square()
        centres = torch.cat([centres, points[torch.multinomial(nearest / nearest.sum(), 1, generator=generator)]])
    for _ in range(iterations):
        assignment = torch.cdist(points, centres).argmin(dim=1)
        for j in range(k):
            if (assignment == j).any():
                centres[j] = points[assignment == j].mean(dim=0)
    return centres, torch.cdist(points, centres).argmin(dim=1)


def main(config: LegendConfig) -> None:
    generator = torch.Generator().manual_seed(config.seed)
    pairs = load_pair_dataset(config.dataset, split=config.split)
    chosen = torch.randperm(len(pairs), generator=generator)[:config.tiles].tolist()
    maps, satellites = [], []
    for i in chosen:
        m = to_uint8(pil_to_tensor(pairs[i]["map"])).flatten(1).T  # (H*W, 3)
        s = to_uint8(pil_to_tensor(pairs[i]["satellite"])).flatten(1).T
        keep = torch.randperm(len(m), generator=generator)[:config.pixels_per_tile]
        maps.append(m[keep])
        satellites.append(s[keep])
    maps, satellites = torch.cat(maps).float(), torch.cat(satellites).float()
    centres, assignment = kmeans(maps, config.clusters, config.iterations, generator)
    share = torch.bincount(assignment, minlength=config.clusters).float() / len(maps)
    print(f"{len(maps)} map pixels from {len(chosen)} tiles; k-means centres by share:")
    for j in share.argsort(descending=True).tolist():
        print(f"  {tuple(centres[j].round().int().tolist())}  {share[j]:.3f}")
    classes = legend_classes(maps.T.reshape(1, 3, 1, -1).round().to(torch.uint8)).flatten()
    print("current MAP_LEGEND: share of pixels and mean satellite colour per class:")
    for c, name in enumerate(LEGEND_NAMES):
        members = classes == c
        mean = satellites[members].mean(dim=0).round().int().tolist() if members.any() else None
        print(f"  {name:<10} {members.float().mean():.4f}  satellite {mean}  (shipped {MAP_LEGEND[name][1]})")


if __name__ == "__main__":
    main(parse_config(LegendConfig, {"default": {}}))
