"""Inference: scene generation with a `DCGANGenerator`.

Seeds: image `i` of a call with `seed=s` is drawn from its own seed `s + i`, so any single image
can be regenerated from its seed alone, whatever the batch it was made in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from .io import tensor_to_pil
from .models import DCGANGenerator


def latents(seeds: Sequence[int], latent_dim: int, truncation: float | None = None) -> torch.Tensor:
    """(len(seeds), latent_dim) standard-normal latents, one reproducible row per seed.

    With `truncation` t > 0, components with |z| > t are redrawn until all lie within t (the
    truncation trick: less variety, more typical images).
    """
    if truncation is not None and truncation <= 0:
        raise ValueError("truncation must be > 0")
    rows = []
    for seed in seeds:
        rng = torch.Generator().manual_seed(int(seed))
        z = torch.randn(latent_dim, generator=rng)
        if truncation is not None:
            outside = z.abs() > truncation
            while outside.any():
                z[outside] = torch.randn(int(outside.sum()), generator=rng)
                outside = z.abs() > truncation
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


@torch.inference_mode()
def generate_images(
    generator: DCGANGenerator,
    num_images: int = 16,
    seed: int = 0,
    label: str | int | None = None,
    truncation: float | None = None,
    batch_size: int = 64,
) -> list[Image.Image]:
    """Generate `num_images` PIL images with seeds `seed, seed + 1, ...`.

    Args:
        generator: a DCGANGenerator (put in eval mode here).
        num_images (`int`, *optional*, defaults to 16): how many images.
        seed (`int`, *optional*, defaults to 0): seed of the first image.
        label (`str` or `int`, *optional*): class name or index, required for conditional models.
        truncation (`float`, *optional*): truncation threshold for the latents.
        batch_size (`int`, *optional*, defaults to 64): images per forward pass.
    """
    if num_images <= 0:
        raise ValueError(f"num_images must be > 0, got {num_images}")
    class_index = resolve_label(generator, label)
    generator.eval()
    images = []
    for start in range(0, num_images, batch_size):
        seeds = range(seed + start, seed + min(start + batch_size, num_images))
        z = latents(seeds, generator.latent_dim, truncation)
        labels = None if class_index is None else torch.full((len(z),), class_index, dtype=torch.long)
        images += [tensor_to_pil(x) for x in generator(z, labels)]
    return images
