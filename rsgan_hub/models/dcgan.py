"""DCGAN for satellite scenes (Radford et al. 2016, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks"), optionally class-conditional with a projection
discriminator (Miyato & Koyama 2018, "cGANs with Projection Discriminator").

The default configuration is the project's recipe (bench/README.md has the study that chose it):
latent 100 -> dense to 8x8x128 -> four blocks of 2x nearest resize + kernel-5 convolution to 128, 64,
32, 16 channels -> a convolution to RGB -> tanh, against a spectral-normalised discriminator.
`DCGANGenerator.seed()` / `DCGANDiscriminator.seed()` build the original TensorFlow project's
network: dense to 8x8x1024, stride-2 transposed convolutions to 384, 256, 128, 64 channels, a
batch-norm discriminator. Resize + convolution has no checkerboard artefacts; `fast.ResizeConv2d`
computes it as the equivalent sub-pixel convolution, for training and inference. Spectral norm in the
discriminator is the usual partner of a hinge loss. Images are RGB in [-1, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .hub import HubModel, find_class
from .init import init_weights

SUPPORTED_SIZES = (64, 128, 256)
START_SIZE = 8  # the dense layer's output is START_SIZE x START_SIZE
# The two recipes' widths. "default": the project's (chosen by the recipe study in bench/README.md),
# "seed": the original TensorFlow project's. Generator: per image size, the dense width, then one per
# 2x upsampling block. Discriminator: one width per convolution, with strides per image size that
# bring it down to 8.
GENERATOR_CHANNELS = {
    "default": {64: [128, 128, 64, 32], 128: [128, 128, 64, 32, 16], 256: [128, 128, 64, 32, 16, 8]},
    "seed": {64: [1024, 384, 256, 128], 128: [1024, 384, 256, 128, 64], 256: [1024, 384, 256, 128, 64, 32]},
}
DISCRIMINATOR_CHANNELS = {"default": [16, 32, 64, 128, 128], "seed": [64, 128, 256, 384, 1024]}
DISCRIMINATOR_STRIDES = {64: [2, 2, 1, 1, 2], 128: [2, 2, 2, 1, 2], 256: [2, 2, 2, 2, 2]}


def discriminator_layers(image_size: int, channels: list[int]) -> list[list[int]]:
    """[channels, stride] per discriminator convolution for `image_size`."""
    return [[c, s] for c, s in zip(channels, DISCRIMINATOR_STRIDES[image_size], strict=True)]


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


UPSAMPLE_MODES = ("resize", "bilinear", "transposed")
RESIZE_MODES = {"resize", "bilinear"}  # resize + conv: the same weights either way
PADDING_MODES = ("zeros", "replicate")


def check_upsampling(upsample: str, padding: str) -> None:
    """The generator's upsampling and padding options, checked (ValueError): transposed convolutions
    pad with zeros only, so replicate padding needs a resize + conv upsample."""
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {', '.join(PADDING_MODES)}, got {padding!r}")
    if padding != "zeros" and upsample == "transposed":
        raise ValueError("transposed convolutions pad with zeros only: replicate padding needs a resize + conv "
                         "upsample (resize or bilinear)")


class DCGANGenerator(HubModel, tags=["dcgan"], pipeline_tag="unconditional-image-generation"):
    """Latent vector (and optional class) -> RGB image in [-1, 1].

    Args:
        image_size: output side, 64, 128 or 256.
        latent_dim: length of the latent vector z ~ N(0, I).
        channels: dense width, then the width after each 2x upsampling block
            (len = log2(image_size / 8) + 1); defaults to the project's recipe (`GENERATOR_CHANNELS`).
        kernel_size: convolution kernel size.
        upsample: "resize" (nearest-neighbour 2x resize then convolution, the default), "bilinear"
            (bilinear 2x resize then convolution: no blocks at the start grid's period) or "transposed"
            (stride-2 transposed convolutions, the original). `DCGANGenerator.seed()`: the original network.
        num_classes: 0 for an unconditional model; > 0 adds a class embedding.
        class_names: names of the classes, stored in config.json so users can ask by name.
        embed_dim: size of the class embedding concatenated to z.
        padding: what the resize + conv blocks' and the RGB convolution's kernels see beyond the image
            edge: "zeros" (the default) or "replicate" (the edge pixels repeated, so that a border is
            not told apart from the inside by zeros).
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
        upsample: str = "resize",
        num_classes: int = 0,
        class_names: list[str] | None = None,
        embed_dim: int = 100,
        padding: str = "zeros",
    ):
        super().__init__()
        _check_size(image_size)
        check_upsampling(upsample, padding)
        channels = list(channels or GENERATOR_CHANNELS["default"][image_size])
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
                mode = "nearest" if upsample == "resize" else "bilinear"
                up = nn.Sequential(nn.Upsample(scale_factor=2, mode=mode),
                                   nn.Conv2d(c_in, c_out, kernel_size, 1, pad, bias=False, padding_mode=padding))
            blocks += [up, nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Sequential(nn.Conv2d(channels[-1], 3, kernel_size, 1, pad, padding_mode=padding), nn.Tanh())
        self._start_channels = channels[0]
        init_weights(self)

    @classmethod
    def seed(cls, image_size: int = 128, **kwargs) -> DCGANGenerator:
        """The original project's generator: its widths and stride-2 transposed convolutions."""
        return cls(image_size=image_size, **{"channels": GENERATOR_CHANNELS["seed"][image_size],
                                             "upsample": "transposed", **kwargs})

    def default_repo_name(self) -> str:
        return "rs-dcgan"

    def class_index(self, name: str) -> int:
        """Index of a class by name (case-insensitive); ValueError listing the known names."""
        index = find_class(self.class_names, name)
        if index is None:
            known = ", ".join(self.class_names) or "none: the model is unconditional"
            raise ValueError(f"unknown class {name!r}; known classes: {known}")
        return index

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, condition: float = 1.0) -> torch.Tensor:
        """z: (B, latent_dim), labels: (B,) int64 or None -> (B, 3, image_size, image_size).
        `condition` scales the class embedding: 1 (always, outside training) conditions fully; a
        training run with transitional conditioning ramps it from 0 (unconditional) to 1."""
        if self.num_classes:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = torch.cat([z, condition * self.embed(labels)], dim=1)
        x = self.project(z).view(-1, self._start_channels, START_SIZE, START_SIZE)  # (B, C0, 8, 8)
        x = self.blocks(x)  # (B, C_last, image_size, image_size)
        return self.to_rgb(x)


class DCGANDiscriminator(HubModel, tags=["dcgan"], pipeline_tag="image-classification"):
    """RGB image (and optional class) -> one real/fake logit per image.

    Args:
        image_size: input side, 64, 128 or 256.
        layers: [channels, stride] per kernel-`kernel_size` convolution; the strides must bring
            image_size down to 8. Defaults to the project's recipe (`DISCRIMINATOR_CHANNELS`).
        kernel_size: convolution kernel size.
        norm: "none" (with spectral norm, the usual choice and the default), "batch" (the original) or
            "instance". `DCGANDiscriminator.seed()`: the original network.
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
        norm: str = "none",
        spectral_norm: bool = True,
        num_classes: int = 0,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        _check_size(image_size)
        if norm not in ("batch", "instance", "none"):
            raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")
        layers = [list(layer) for layer in (layers or discriminator_layers(image_size, DISCRIMINATOR_CHANNELS["default"]))]
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

    @classmethod
    def seed(cls, image_size: int = 128, **kwargs) -> DCGANDiscriminator:
        """The original project's discriminator: its widths, batch norm, no spectral norm."""
        return cls(image_size=image_size, **{"layers": discriminator_layers(image_size, DISCRIMINATOR_CHANNELS["seed"]),
                                             "norm": "batch", "spectral_norm": False, **kwargs})

    def default_repo_name(self) -> str:
        return "rs-dcgan-discriminator"

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, condition: float = 1.0) -> torch.Tensor:
        """images: (B, 3, S, S) -> logits (B,). `condition` scales the projection (class) term, as the
        generator's `condition` its class embedding."""
        h = self.body(images).flatten(1)  # (B, C_last * 8 * 8)
        logits = self.head(h).squeeze(1)
        if self.num_classes:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            logits = logits + condition * (self.embed(labels) * h).sum(dim=1)  # projection term
        return logits


def with_classes(model: DCGANGenerator | DCGANDiscriminator, class_names: list[str]):
    """A copy of a conditional DCGAN generator or discriminator for `class_names` (fine-tuning on
    new data): every weight as in `model`; a class whose name `model` knows (case-insensitive)
    keeps its embedding row, a new one gets a fresh row; classes not in `class_names` are dropped."""
    known = {name.lower(): i for i, name in enumerate(model.class_names)}
    copy = type(model)(**{**model.init_config, "num_classes": len(class_names), "class_names": list(class_names)})
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
