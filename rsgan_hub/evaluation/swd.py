"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018, "Progressive Growing
of GANs for Improved Quality, Stability, and Variation", section 5 and appendix D).

A check that uses no learned features: each image set is decomposed into a Laplacian pyramid (down
to 16 px), random 7x7 neighbourhoods are cut from every level, each level's descriptors are
normalised per colour channel, and the distance between the two descriptor clouds is the mean, over
random unit directions, of the 1-D Wasserstein distance of their projections (sorted projections,
compared element by element). Coarse levels measure colour and layout, fine levels texture. Like
the reference code we report the average over levels, multiplied by 1e3.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# 5x5 binomial filter of the reference implementation (sum 1).
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
GAUSSIAN_5X5 = (_BINOMIAL[:, None] * _BINOMIAL[None, :]) / 256.0


def _blur_downsample(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): the 5x5 binomial blur evaluated only where it is kept."""
    kernel = GAUSSIAN_5X5.to(x)[None, None].repeat(x.shape[1], 1, 1, 1)  # depthwise (C, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, stride=2, groups=x.shape[1])


def laplacian_pyramid(images: torch.Tensor, min_size: int = 16) -> list[torch.Tensor]:
    """(B, C, S, S) -> [Laplacian at S, S/2, ..., then the Gaussian residual at min_size]."""
    levels, current = [], images
    while current.shape[-1] > min_size:
        down = _blur_downsample(current)
        up = F.interpolate(down, size=current.shape[-2:], mode="bilinear", align_corners=False)
        levels.append(current - up)
        current = down
    levels.append(current)
    return levels


def patch_descriptors(images: torch.Tensor, patches_per_image: int, generator: torch.Generator,
                      patch_size: int = 7, min_size: int = 16) -> list[torch.Tensor]:
    """Per pyramid level, (B * patches_per_image, C * patch_size**2) random-patch descriptors."""
    out = []
    for level in laplacian_pyramid(images.float(), min_size):
        b, c, h, w = level.shape
        ys = torch.randint(0, h - patch_size + 1, (b, patches_per_image), generator=generator)
        xs = torch.randint(0, w - patch_size + 1, (b, patches_per_image), generator=generator)
        offsets = torch.arange(patch_size)
        rows = (ys[..., None] + offsets)[..., :, None]  # (b, P, 7, 1)
        cols = (xs[..., None] + offsets)[..., None, :]  # (b, P, 1, 7)
        index = torch.arange(b)[:, None, None, None]
        patches = level.permute(0, 2, 3, 1)[index, rows, cols]  # (b, P, 7, 7, C)
        out.append(patches.permute(0, 1, 4, 2, 3).reshape(b * patches_per_image, -1))
    return out


def _normalise(desc: torch.Tensor, channels: int) -> torch.Tensor:
    """Zero mean, unit std per colour channel over all patches, as the reference `finalize_descriptors`."""
    d = desc.view(len(desc), channels, -1)
    d = (d - d.mean(dim=(0, 2), keepdim=True)) / d.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    return d.reshape(len(desc), -1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator, directions_per_repeat: int = 128,
                       repeats: int = 4) -> float:
    """Mean 1-D Wasserstein distance of (N, d) and (N, d) along 4 x 128 random unit directions (the
    reference's numbers)."""
    if a.shape != b.shape:
        raise ValueError(f"sliced Wasserstein needs equal-sized descriptor sets, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    distances = []
    for _ in range(repeats):
        directions = torch.randn(a.shape[1], directions_per_repeat, generator=generator)
        directions /= directions.norm(dim=0, keepdim=True)
        # (directions, N) rows sorted with numpy: several times faster than torch's sort on CPU.
        projected_a = np.sort((a @ directions).T.contiguous().numpy(), axis=1)
        projected_b = np.sort((b @ directions).T.contiguous().numpy(), axis=1)
        distances.append(float(np.abs(projected_a - projected_b).mean()))
    return sum(distances) / len(distances)


def swd(real: torch.Tensor, fake: torch.Tensor, patches_per_image: int = 32, seed: int = 0,
        batch_size: int = 256) -> dict[str, float]:
    """SWD x 1e3 between two sets of equal-sized square images (N, 3, S, S), uint8 or [-1, 1] float: per
    pyramid level (`swd_<side>`) and their average (`swd`). The larger set is subsampled to the smaller
    one's size; images are decomposed `batch_size` at a time, so only the descriptors are held."""
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"SWD compares images of one size, got {tuple(real.shape[1:])} and {tuple(fake.shape[1:])}")
    if real.shape[-1] < 16 or real.shape[-1] != real.shape[-2]:
        raise ValueError(f"SWD needs square images of at least 16 px, got {tuple(real.shape[-2:])}")
    n = min(len(real), len(fake))
    levels = []
    for images in (real, fake):
        # The same seed for both sets: the same patch positions (common random numbers), so a set
        # compared with itself scores exactly 0 and sampling noise cancels between the two sides.
        generator = torch.Generator().manual_seed(seed)
        images = images[torch.randperm(len(images), generator=generator)[:n]]
        per_batch = []
        for start in range(0, n, batch_size):
            batch = images[start:start + batch_size].float()
            # uint8 stays in [0, 255], the reference's scale; [-1, 1] is mapped there.
            batch = batch if images.dtype == torch.uint8 else (batch + 1) * 127.5
            per_batch.append(patch_descriptors(batch, patches_per_image, generator))
        levels.append([torch.cat(level) for level in zip(*per_batch)])
    result, generator = {}, torch.Generator().manual_seed(seed + 1)
    for i, (a, b) in enumerate(zip(*levels)):
        channels = real.shape[1]
        result[f"swd_{real.shape[-1] // 2 ** i}"] = 1e3 * sliced_wasserstein(
            _normalise(a, channels), _normalise(b, channels), generator)
    result["swd"] = sum(result.values()) / len(result)
    return result
