"""The weight initialisation of DCGAN (Radford et al. 2016), which pix2pix (Isola et al. 2017) keeps:
convolution, linear and embedding weights ~ N(0, 0.02), the scales of affine normalisation layers
~ N(1, 0.02), every bias 0. Each model calls it at the end of its constructor."""

from __future__ import annotations

from torch import nn

_WEIGHTS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)


def init_weights(module: nn.Module) -> None:
    """Initialise every layer of `module` in place (spectral-normalised layers: their `weight_orig`)."""
    for m in module.modules():
        if isinstance(m, _WEIGHTS):
            nn.init.normal_(m.weight_orig if hasattr(m, "weight_orig") else m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
