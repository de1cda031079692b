"""Differentiable augmentation for data-efficient GAN training (Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training", the DiffAugment policy "color,translation,cutout").

The same random transform family is applied to real and fake images *before the discriminator*,
in both the D and G steps; every operation is differentiable, so generator gradients flow through
it. The discriminator then cannot memorise a small training set, which is what lets a GAN train
on a few thousand scenes. Images are (B, C, H, W) in [-1, 1]; each image gets its own draw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout") -> torch.Tensor:
    """Apply the comma-separated `policy` ("" = identity) to a batch."""
    for name in filter(None, policy.split(",")):
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown DiffAugment operation {name!r}; choose from {sorted(AUGMENTATIONS)}")
        for op in AUGMENTATIONS[name]:
            x = op(x)
    return x


def _rand(x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, dtype=x.dtype, device=x.device)


def _brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_rand(x, 1, 1, 1) - 0.5)  # shift in [-0.5, 0.5]


def _saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W) grey level
    return (x - mean) * (_rand(x, 1, 1, 1) * 2) + mean


def _contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its side, filling with zeros (integer-pixel gather)."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    grid_b, grid_y, grid_x = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                            torch.arange(w, device=x.device), indexing="ij")
    grid_y = torch.clamp(grid_y + dy + 1, 0, h + 1)  # +1: index into the zero-padded image
    grid_x = torch.clamp(grid_x + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # (B, C, H + 2, W + 2)
    return padded.permute(0, 2, 3, 1)[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of side `ratio` * image side per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    grid_b, grid_y, grid_x = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(ch, device=x.device),
                                            torch.arange(cw, device=x.device), indexing="ij")
    grid_y = torch.clamp(grid_y + oy - ch // 2, 0, h - 1)
    grid_x = torch.clamp(grid_x + ox - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[grid_b, grid_y, grid_x] = 0
    return x * mask.unsqueeze(1)


AUGMENTATIONS = {"color": [_brightness, _saturation, _contrast], "translation": [_translation], "cutout": [_cutout]}
