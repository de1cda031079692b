"""The networks of rsgan_hub - the four GAN networks and the evaluation scene classifier - each a
`PyTorchModelHubMixin` model (see `hub.py`)."""

from .classifier import SceneClassifier
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .hub import HubModel, ModelLoadError
from .pix2pix import PatchDiscriminator, Pix2PixGenerator

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "Pix2PixGenerator", "PatchDiscriminator", "HubModel",
           "ModelLoadError", "SceneClassifier"]
