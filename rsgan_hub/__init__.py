"""rsgan_hub: remote-sensing image generation (DCGAN) and satellite <-> map translation (pix2pix)
on the Hugging Face stack. Importing it has no side effects.

Pixel convention: networks take and return RGB tensors in [-1, 1] (see `rsgan_hub.io`).
"""

from .io import make_grid, pil_to_tensor, tensor_to_pil
from .models import (DCGANDiscriminator, DCGANGenerator, ModelLoadError, PatchDiscriminator, Pix2PixGenerator,
                     SceneClassifier)
from .pipelines import class_grid, generate_images, latent_walk, latents, translate_file, translate_image

__version__ = "0.1.0"

__all__ = [
    "DCGANGenerator", "DCGANDiscriminator", "Pix2PixGenerator", "PatchDiscriminator", "ModelLoadError", "SceneClassifier",
    "generate_images", "class_grid", "latents", "latent_walk", "translate_image", "translate_file",
    "make_grid", "pil_to_tensor", "tensor_to_pil",
]
