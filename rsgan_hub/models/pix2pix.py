"""pix2pix for satellite <-> map translation (Isola et al. 2017, "Image-to-Image Translation with
Conditional Adversarial Networks"): a U-Net generator and a 70x70 PatchGAN discriminator.

The eval-mode trap, and how this module avoids it: the reference implementation trains with batch
norm at batch size 1, so in `eval()` (what `from_pretrained` returns) batch norm switches from the
image's own statistics to running averages and the maps get visibly worse. Here every
normalisation layer is instance norm *without running statistics*, so train and eval mode compute
the same function apart from dropout (and a legend generator's drawing, below). Dropout (0.5 in the three innermost decoder blocks)
regularises training only; samples - during training and after loading - are drawn in eval mode,
so a loaded generator reproduces exactly what training showed. Images are RGB in [-1, 1].

Maps as classes. A map rendering is a few flat colours (a legend), and regressing its RGB with L1
through a tanh finds the per-pixel median - the background - for every uncertain pixel. A generator
built with a `palette` (one 8-bit RGB colour per legend class) instead ends in one logit per class:
`class_logits` gives them (for a cross-entropy loss and for class rasters), and `forward` still
returns an RGB image in [-1, 1] - in training the palette colours weighted by the class
probabilities, in eval mode the most likely class's colour - so the PatchGAN, `translate_image` and
every RGB tool use it unchanged.

Both networks are plain torch.nn layers. Faster forms of the same functions, for CPU training and
inference, live in `fast.py` and are applied by whoever wants them (the training script, the
inference copy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hub import HubModel
from .init import init_weights


def _norm(channels: int) -> nn.Module:
    # track_running_stats=False: identical statistics in train and eval mode (see module docstring).
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) on the bottom/right to multiples of `multiple`: reflect where the image is
    large enough, replicate otherwise. Returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (h, w)


UPSAMPLE_MODES = ("transposed", "resize")


def _upsampling(c_in: int, c_out: int, upsample: str, bias: bool = True) -> nn.Module:
    """One 2x upsampling layer of the U-Net decoder."""
    if upsample == "transposed":
        return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias))


class Pix2PixGenerator(HubModel, tags=["pix2pix"], pipeline_tag="image-to-image"):
    """U-Net: (B, in_channels, H, W) in [-1, 1] -> (B, out_channels, H, W) in [-1, 1], any H, W.

    Args:
        in_channels / out_channels: image channels.
        base_channels: width of the first encoder block; widths double up to 8x base.
        num_downs: encoder blocks; 8 takes 256 px down to 1x1 as in the paper. Inputs are padded
            to a multiple of 2**num_downs and cropped back.
        dropout: dropout in the three innermost decoder blocks (training only).
        direction: "sat2map", "map2sat" or "" - recorded so tools can check the task.
        palette: 8-bit RGB colours of a map legend, one per class (e.g. `evaluation.LEGEND_PALETTE`):
            the U-Net predicts class logits and renders them in these colours (`out_channels` is
            then unused). None: the paper's tanh RGB output.
        class_names: names of the palette's classes (for class rasters and cards).
        outlines: class name -> 8-bit RGB colour of that class's outline in whole-scene maps
            (`translate_image` draws a one-pixel border around each region of the class, as map
            styles draw buildings); the class ids and the metrics are unaffected.
        upsample: how the decoder doubles the side - "transposed" (4x4 stride-2 transposed
            convolutions, the paper's) or "resize" (nearest 2x resize then a 3x3 convolution: no
            checkerboard from unevenly trained transposed-convolution phases, Odena et al. 2016).
    """

    card_title = "rsgan_hub pix2pix translator"
    card_summary = "A pix2pix U-Net that translates between satellite imagery and map renderings, tile by tile or whole scenes."
    card_usage = ("from rsgan_hub import translate_image\n"
                  "from PIL import Image\n"
                  "out = translate_image(model, Image.open('scene.png'))  # same size as the input")
    card_cli_usage = "rsgan translate scene.tif --model {repo_id} --out map.tif"
    card_intended_use = ("Research and illustration: drafting map renderings from imagery, or plausible imagery "
                         "from maps, e.g. to augment paired training sets.")

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 64,
        num_downs: int = 8,
        dropout: float = 0.5,
        direction: str = "",
        palette: list[list[int]] | None = None,
        class_names: list[str] | None = None,
        outlines: dict[str, list[int]] | None = None,
        upsample: str = "transposed",
    ):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
        if num_downs < 5:
            raise ValueError("num_downs must be >= 5")
        if palette is not None:
            if len(palette) < 2 or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in palette):
                raise ValueError("palette must be a list of at least two [R, G, B] colours in 0..255")
            if class_names is not None and len(class_names) != len(palette):
                raise ValueError(f"class_names has {len(class_names)} names for {len(palette)} palette colours")
        if outlines and (palette is None or class_names is None or not set(outlines) <= set(class_names)):
            raise ValueError("outlines name classes of the palette: they need palette and class_names, and "
                             f"{sorted(set(outlines) - set(class_names or []))} are not among them")
        if direction not in ("", "sat2map", "map2sat"):
            raise ValueError(f"direction must be 'sat2map', 'map2sat' or '', got {direction!r}")
        self.num_downs, self.direction = num_downs, direction
        widths = [min(base_channels * 2**i, base_channels * 8) for i in range(num_downs)]
        # Encoder: Conv(4, s2) -> IN -> LeakyReLU(0.2); no norm on the first and innermost blocks
        # (the innermost output is 1x1 at 256 px, where instance norm would zero it).
        self.down = nn.ModuleList()
        c_in = in_channels
        for i, c_out in enumerate(widths):
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i in (0, num_downs - 1))]
            if 0 < i < num_downs - 1:
                layers.append(_norm(c_out))
            layers.append(nn.LeakyReLU(0.2))
            self.down.append(nn.Sequential(*layers))
            c_in = c_out
        # Decoder: ConvT(4, s2) -> IN -> [Dropout] -> ReLU, concatenating the mirrored encoder output.
        self.up = nn.ModuleList()
        for i in reversed(range(1, num_downs)):
            c_skip_in = widths[i] if i == num_downs - 1 else widths[i] * 2
            layers = [_upsampling(c_skip_in, widths[i - 1], upsample, bias=False), _norm(widths[i - 1])]
            if i >= num_downs - 3 and dropout > 0:  # the three innermost decoder blocks
                layers.append(nn.Dropout(dropout))
            layers.append(nn.ReLU())
            self.up.append(nn.Sequential(*layers))
        if palette is None:
            self.to_image = nn.Sequential(_upsampling(widths[0] * 2, out_channels, upsample), nn.Tanh())
        else:  # class logits; rendered through the palette in forward
            self.to_image = nn.Sequential(_upsampling(widths[0] * 2, len(palette), upsample))
            # (classes, 3) in [-1, 1]; derived from the config, so not part of the state dict
            self.register_buffer("palette", torch.tensor(palette, dtype=torch.float32) / 127.5 - 1, persistent=False)
        self.class_names = list(class_names) if class_names is not None else None
        self.outlines = dict(outlines or {})
        init_weights(self)

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this."""
        return 2**self.num_downs

    def default_repo_name(self) -> str:
        return f"rs-pix2pix-{self.direction}" if self.direction else "rs-pix2pix"

    @property
    def predicts_classes(self) -> bool:
        """True for a legend generator (built with a palette)."""
        return hasattr(self, "palette")

    def unet(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels or classes, H, W): tanh RGB, or class logits."""
        x, (h, w) = pad_to_multiple(x, self.multiple)
        skips = []
        for block in self.down:  # 256 -> 128 -> ... -> 1 (at a 256 px input)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:  # 1 -> 2 -> ... -> 128, each concatenated with its encoder twin
            x = torch.cat([block(x), skips.pop()], dim=1)
        return self.to_image(x)[..., :h, :w]

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, classes, H, W) legend logits (palette generators only)."""
        if not self.predicts_classes:
            raise TypeError("this generator predicts RGB, not legend classes (it was built without a palette)")
        return self.unet(x)

    def shift_class_logits(self, offsets) -> None:
        """Add offsets[k] to class k's logit at every pixel, in place (through the last layer's bias).
        With offsets = -log(class weight) this is post-hoc logit adjustment (Menon et al. 2021, "Long-tail
        learning via logit adjustment"): it takes back the push towards rare classes that a class-weighted
        cross-entropy builds into the logits."""
        if not self.predicts_classes:
            raise TypeError("this generator predicts RGB, not legend classes (it was built without a palette)")
        offsets = torch.as_tensor(offsets, dtype=torch.float32).flatten()
        if len(offsets) != len(self.palette) or not torch.isfinite(offsets).all():
            raise ValueError(f"need {len(self.palette)} finite offsets, one per class; got {offsets.tolist()}")
        bias = [p for name, p in self.to_image.named_parameters() if name.endswith("bias")][-1]  # (classes,)
        with torch.no_grad():
            bias += offsets.to(bias)

    def render(self, probabilities: torch.Tensor) -> torch.Tensor:
        """(B, classes, H, W) class probabilities (or one-hot classes) -> (B, 3, H, W) RGB in [-1, 1]."""
        return torch.einsum("bkhw,kc->bchw", probabilities.float(), self.palette)

    def forward(self, x: torch.Tensor, output: str = "rgb") -> torch.Tensor:
        """(B, in_channels, H, W) in [-1, 1] -> (B, 3, H, W) RGB in [-1, 1]; output="logits": the
        legend logits (B, classes, H, W), as `class_logits` (through forward, so wrappers such as
        DistributedDataParallel see the call).

        A legend generator's RGB: in training mode the palette colours weighted by the class
        probabilities (differentiable, what the PatchGAN sees); in eval mode (after `from_pretrained`)
        each pixel's most likely class in its colour - the crisp map."""
        if output == "logits":
            return self.class_logits(x)
        if output != "rgb":
            raise ValueError(f"output must be 'rgb' or 'logits', got {output!r}")
        if not self.predicts_classes:
            return self.unet(x)
        logits = self.class_logits(x).float()
        if self.training:
            return self.render(logits.softmax(dim=1))
        return self.render(F.one_hot(logits.argmax(dim=1), len(self.palette)).permute(0, 3, 1, 2))


class PatchDiscriminator(HubModel, tags=["pix2pix"], pipeline_tag="image-classification"):
    """PatchGAN: concatenated (input, output) pair -> a grid of real/fake logits.

    With `num_layers=3` each logit sees a 70x70 patch. Call `output_shape(h, w)` for the grid size
    instead of recomputing it.

    Args:
        in_channels: channels of input + output together (6 for RGB -> RGB).
        base_channels: width of the first convolution; doubles per layer up to 8x.
        num_layers: stride-2 layers after the first (3 -> 70x70 receptive field).
    """

    card_title = "rsgan_hub PatchGAN discriminator"
    card_summary = "The 70x70 PatchGAN discriminator of an rsgan_hub pix2pix model, saved to resume or fine-tune training."
    card_usage = "logits = model(torch.cat([source, target], dim=1))  # (B, 1, h, w)"
    card_cli_usage = "accelerate launch train/pix2pix.py --help"
    card_intended_use = "Resuming or fine-tuning pix2pix training."

    def __init__(self, in_channels: int = 6, base_channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c_in = base_channels
        for i in range(1, num_layers + 1):
            c_out = base_channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [nn.Conv2d(c_in, c_out, 4, stride, 1, bias=False), _norm(c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        self.num_layers = num_layers
        init_weights(self)

    def default_repo_name(self) -> str:
        return "rs-pix2pix-discriminator"

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """Logit grid size for an input of height x width."""
        for m in self.model:
            if isinstance(m, nn.Conv2d):
                k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
                height, width = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
        return height, width

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        """pair: (B, in_channels, H, W) -> logits (B, 1, *output_shape(H, W))."""
        return self.model(pair)
