"""The four networks of rsgan_hub, each a `PyTorchModelHubMixin` model (see `hub.py`)."""

from .dcgan import DCGANDiscriminator, DCGANGenerator
from .hub import HubModel, ModelLoadError
from .pix2pix import PatchDiscriminator, Pix2PixGenerator

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "Pix2PixGenerator", "PatchDiscriminator", "HubModel",
           "ModelLoadError"]
