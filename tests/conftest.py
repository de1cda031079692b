"""Shared fixtures: tiny CPU configurations of the four networks."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_DCGAN_CHANNELS = {64: [32, 16, 8, 8], 128: [32, 16, 8, 8, 8], 256: [32, 16, 8, 8, 8, 8]}
TINY_DCGAN_LAYERS = {
    64: [[8, 2], [8, 2], [16, 1], [16, 1], [16, 2]],
    128: [[8, 2], [8, 2], [16, 2], [16, 1], [16, 2]],
    256: [[8, 2], [8, 2], [16, 2], [16, 2], [16, 2]],
}


def tiny_dcgan(image_size: int = 64, num_classes: int = 0, class_names=None, **kwargs):
    """A (generator, discriminator) pair small enough for CPU tests."""
    from rsgan_hub import DCGANDiscriminator, DCGANGenerator

    g = DCGANGenerator(image_size=image_size, latent_dim=8, channels=TINY_DCGAN_CHANNELS[image_size],
                       num_classes=num_classes, class_names=class_names, embed_dim=4, **kwargs)
    d = DCGANDiscriminator(image_size=image_size, layers=TINY_DCGAN_LAYERS[image_size], num_classes=num_classes,
                           class_names=class_names)
    return g, d


def tiny_pix2pix(**kwargs):
    from rsgan_hub import PatchDiscriminator, Pix2PixGenerator

    return Pix2PixGenerator(base_channels=4, num_downs=5, **kwargs), PatchDiscriminator(base_channels=4)


@pytest.fixture
def seeded():
    torch.manual_seed(0)
