"""DCGAN for satellite scenes (Radford et al. 2016, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks"), optionally class-conditional with a projection
discriminator (Miyato & Koyama 2018, "cGANs with Projection Discriminator").

The default configuration is the original TensorFlow project's 128x128 network: latent 100 -> dense
to 8x8x1024 -> four stride-2 kernel-5 transposed convolutions to 384, 256, 128, 64 channels -> a
stride-1 convolution to RGB -> tanh. `upsample="resize"` swaps each transposed convolution for
nearest-neighbour resize + convolution (no checkerboard artefacts; computed as the equivalent
sub-pixel convolution, `layers.ResizeConv2d`); `spectral_norm=True` on the
discriminator is the usual partner of a hinge loss. Images are RGB in [-1, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .hub import HubModel
from .layers import ResizeConv2d

SUPPORTED_SIZES = (64, 128, 256)
START_SIZE = 8  # the dense layer's output is START_SIZE x START_SIZE
# Default widths per image size: the dense width, then one entry per 2x upsampling block.
DEFAULT_GENERATOR_CHANNELS = {
    64: [1024, 384, 256, 128],
    128: [1024, 384, 256, 128, 64],
    256: [1024, 384, 256, 128, 64, 32],
}
# Discriminator: (channels, stride) per convolution; the strides bring image_size down to 8.
DEFAULT_DISCRIMINATOR_LAYERS = {
    64: [[64, 2], [128, 2], [256, 1], [384, 1], [1024, 2]],
    128: [[64, 2], [128, 2], [256, 2], [384, 1], [1024, 2]],
    256: [[64, 2], [128, 2], [256, 2], [384, 2], [1024, 2]],
}


def init_weights(module: nn.Module) -> None:
    """DCGAN init: conv/linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            weight = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _check_classes(num_classes: int, class_names: list[str] | None) -> list[str]:
    if num_classes < 0:
        raise ValueError("num_classes must be >= 0")
    if class_names is None:
        return [f"class_{i}" for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
    return list(class_names)


def _check_size(image_size: int) -> None:
    if image_size not in SUPPORTED_SIZES:
        raise ValueError(f"image_size must be one of {SUPPORTED_SIZES}, got {image_size}")


class DCGANGenerator(HubModel, tags=["dcgan"], pipeline_tag="unconditional-image-generation"):
    """Latent vector (and optional class) -> RGB image in [-1, 1].

    Args:
        image_size: output side, 64, 128 or 256.
        latent_dim: length of the latent vector z ~ N(0, I).
        channels: dense width, then the width after each 2x upsampling block
            (len = log2(image_size / 8) + 1); defaults to the original project's widths.
        kernel_size: convolution kernel size.
        upsample: "transposed" (stride-2 transposed convolutions, the original) or "resize"
            (nearest-neighbour 2x resize then convolution).
        num_classes: 0 for an unconditional model; > 0 adds a class embedding.
        class_names: names of the classes, stored in config.json so users can ask by name.
        embed_dim: size of the class embedding concatenated to z.
    """

    card_title = "rsgan_hub DCGAN satellite-scene generator"
    card_summary = ("A DCGAN that synthesizes RGB remote-sensing scenes, for augmenting scene-classification "
                    "training sets.")
    card_usage = ("from rsgan_hub import generate_images\n"
                  "images = generate_images(model, num_images=16, seed=0)  # list of PIL images")
    card_cli_usage = "rsgan generate --model {repo_id} --num-images 16 --seed 0 --out samples/"
    card_intended_use = ("Research on data augmentation for remote-sensing scene classification, and "
                         "illustration of GANs on aerial imagery.")

    def __init__(
        self,
        image_size: int = 128,
        latent_dim: int = 100,
        channels: list[int] | None = None,
        kernel_size: int = 5,
        upsample: str = "transposed",
        num_classes: int = 0,
        class_names: list[str] | None = None,
        embed_dim: int = 100,
    ):
        super().__init__()
        _check_size(image_size)
        if upsample not in ("transposed", "resize"):
            raise ValueError(f"upsample must be 'transposed' or 'resize', got {upsample!r}")
        channels = list(channels or DEFAULT_GENERATOR_CHANNELS[image_size])
        num_blocks = int(math.log2(image_size // START_SIZE))
        if len(channels) != num_blocks + 1:
            raise ValueError(f"image_size {image_size} needs {num_blocks + 1} channels, got {channels}")
        self.image_size, self.latent_dim, self.num_classes = image_size, latent_dim, num_classes
        self.class_names = _check_classes(num_classes, class_names)

        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        in_features = latent_dim + (embed_dim if num_classes else 0)
        self.project = nn.Sequential(  # (B, in_features) -> (B, C0 * 8 * 8)
            nn.Linear(in_features, channels[0] * START_SIZE * START_SIZE, bias=False),
            nn.BatchNorm1d(channels[0] * START_SIZE * START_SIZE),
            nn.LeakyReLU(0.2),
        )
        pad = kernel_size // 2
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):  # each block doubles the side
            if upsample == "transposed":
                up = nn.ConvTranspose2d(c_in, c_out, kernel_size, 2, pad, output_padding=1, bias=False)
            else:
                up = ResizeConv2d(c_in, c_out, kernel_size, bias=False)  # computed as a sub-pixel conv
            blocks += [up, nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Sequential(nn.Conv2d(channels[-1], 3, kernel_size, 1, pad), nn.Tanh())
        self._start_channels = channels[0]
        init_weights(self)

    def default_repo_name(self) -> str:
        return "rs-dcgan"

    def class_index(self, name: str) -> int:
        """Index of a class by name (case-insensitive); ValueError listing the known names."""
        lowered = [c.lower() for c in self.class_names]
        if name.lower() not in lowered:
            known = ", ".join(self.class_names) or "none: the model is unconditional"
            raise ValueError(f"unknown class {name!r}; known classes: {known}")
        return lowered.index(name.lower())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, latent_dim), labels: (B,) int64 or None -> (B, 3, image_size, image_size)."""
        if self.num_classes:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = torch.cat([z, self.embed(labels)], dim=1)
        x = self.project(z).view(-1, self._start_channels, START_SIZE, START_SIZE)  # (B, C0, 8, 8)
        x = self.blocks(x)  # (B, C_last, image_size, image_size)
        return self.to_rgb(x)


class DCGANDiscriminator(HubModel, tags=["dcgan"], pipeline_tag="image-classification"):
    """RGB image (and optional class) -> one real/fake logit per image.

    Args:
        image_size: input side, 64, 128 or 256.
        layers: [channels, stride] per kernel-`kernel_size` convolution; the strides must bring
            image_size down to 8. Defaults to the original project's 64, 128, 256, 384(s1), 1024.
        kernel_size: convolution kernel size.
        norm: "batch" (the original), "instance" or "none" (with spectral norm, the usual choice).
        spectral_norm: wrap every convolution and the linear head in spectral normalisation.
        num_classes: > 0 makes it a projection discriminator: logit += <embed(y), features>.
        class_names: stored for symmetry with the generator.
    """

    card_title = "rsgan_hub DCGAN discriminator"
    card_summary = "The discriminator of an rsgan_hub DCGAN, saved to resume or fine-tune adversarial training."
    card_usage = "logits = model(images)  # (B, 3, H, W) in [-1, 1] -> (B,)"
    card_cli_usage = "accelerate launch train/dcgan.py --help"
    card_intended_use = "Resuming or fine-tuning GAN training; not a scene classifier."

    def __init__(
        self,
        image_size: int = 128,
        layers: list[list[int]] | None = None,
        kernel_size: int = 5,
        norm: str = "batch",
        spectral_norm: bool = False,
        num_classes: int = 0,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        _check_size(image_size)
        if norm not in ("batch", "instance", "none"):
            raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")
        layers = [list(layer) for layer in (layers or DEFAULT_DISCRIMINATOR_LAYERS[image_size])]
        side = image_size
        for _, stride in layers:
            side //= stride
        if side != START_SIZE:
            raise ValueError(f"layers reduce {image_size} px to {side}, not {START_SIZE}")
        self.num_classes = num_classes
        self.class_names = _check_classes(num_classes, class_names)
        sn = nn.utils.spectral_norm if spectral_norm else (lambda m: m)
        pad = kernel_size // 2
        body, c_in = [], 3
        for i, (c_out, stride) in enumerate(layers):
            body.append(sn(nn.Conv2d(c_in, c_out, kernel_size, stride, pad, bias=norm == "none")))
            if norm == "batch" and i > 0:  # no norm on the first layer, as in DCGAN
                body.append(nn.BatchNorm2d(c_out))
            elif norm == "instance" and i > 0:
                body.append(nn.InstanceNorm2d(c_out, affine=True))
            body.append(nn.LeakyReLU(0.2))
            c_in = c_out
        self.body = nn.Sequential(*body)
        features = c_in * START_SIZE * START_SIZE
        self.head = sn(nn.Linear(features, 1))
        self.embed = sn(nn.Embedding(num_classes, features)) if num_classes else None
        init_weights(self)

    def default_repo_name(self) -> str:
        return "rs-dcgan-discriminator"

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """images: (B, 3, S, S) -> logits (B,)."""
        h = self.body(images).flatten(1)  # (B, C_last * 8 * 8)
        logits = self.head(h).squeeze(1)
        if self.num_classes:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            logits = logits + (self.embed(labels) * h).sum(dim=1)  # projection term
        return logits


def with_classes(model: DCGANGenerator | DCGANDiscriminator, class_names: list[str]):
    """A copy of a conditional DCGAN generator or discriminator for `class_names` (fine-tuning on
    new data): every weight as in `model`; a class whose name `model` knows (case-insensitive)
    keeps its embedding row, a new one gets a fresh row; classes not in `class_names` are dropped."""
    known = {name.lower(): i for i, name in enumerate(model.class_names)}
    copy = type(model)(**{**model._hub_mixin_config, "num_classes": len(class_names), "class_names": list(class_names)})
    state, fresh = model.state_dict(), copy.state_dict()
    if list(class_names) == list(model.class_names):
        copy.load_state_dict(state)
        return copy
    for key in ("embed.weight", "embed.weight_orig", "embed.weight_u"):  # (num_classes, ...) rows
        if key in state:
            rows = fresh[key].clone()
            for new, name in enumerate(class_names):
                if name.lower() in known:
                    rows[new] = state[key][known[name.lower()]]
            state[key] = rows
    if "embed.weight_u" in state:  # spectral norm's left singular vector stays a unit vector
        state["embed.weight_u"] = torch.nn.functional.normalize(state["embed.weight_u"], dim=0)
    copy.load_state_dict(state)
    return copy
