"""Faster forms of the plain torch.nn layers the models are built from: the same functions, the same
parameters, applied by whoever wants the speed, by replacing modules - the model files stay plain.

* `training_layers(model)` - in place, for CPU training: the U-Net's convolutions become
  `GemmConv2d` / `GemmConvTranspose2d` (small outputs as unfold / fold + one matrix product, below)
  and the DCGAN's resize + convolution blocks become `ResizeConv2d` (a sub-pixel convolution). They
  share the original layers' parameters, so state dicts, optimizers and checkpoints see no change.
* `inference_copy(model, precision)` - a separate copy for inference: eval mode, channels-last,
  bf16 or fp32 weights, `ResizeConv2d` with its folded weight computed once, `PhaseConvTranspose2d`
  for a last transposed convolution to a few channels, `FastInstanceNorm`, in-place activations.
  Prepare it once (the app does, at start) and pass it around; the model itself is left untouched.
* `tile_chunk` - how many tiles one forward pass of the inference copy may take.

Each layer is tested against the layer it replaces (values and gradients); `bench/` measures what
each buys on the machine at hand.

`ResizeConv2d` - a 2x nearest-neighbour resize followed by a k x k convolution (k odd, "same"
padding). Each of the four output phases - (even | odd row) x (even | odd column) - sees only a
(2R + 1)^2 window of the input, R = ceil(k / 4), because the resized image repeats every input pixel
twice along each axis: taps that land on the same input pixel sum into one weight. `subpixel_weight`
folds the k x k kernel into one (2R + 1)^2 kernel with 4x the output channels and `pixel_shuffle`
interleaves the phases (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an
Efficient Sub-Pixel Convolutional Neural Network"). For k = 5 that is 36 multiply-adds per input
pixel and channel pair instead of 100, and the 4x larger resized tensor is never built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def subpixel_weight(weight: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Conv2d weight (C_out, C_in, k, k) applied after a 2x nearest resize -> (weight (4 C_out, C_in,
    2R + 1, 2R + 1), padding R) of the equivalent low-resolution convolution, whose output channel
    c * 4 + a * 2 + b is output pixel (2y + a, 2x + b) of channel c, the order `F.pixel_shuffle` reads.
    Differentiable in `weight`; computed in float32 and returned in the weight's dtype."""
    c_out, c_in, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"need a square odd kernel, got {k}x{k2}")
    r = k // 2
    radius = (r + 1) // 2
    # fold[a, e, d] = 1 when tap d - r of output phase a reads input offset e - radius:
    # resized pixel 2y + a + (d - r) is input pixel y + floor((a + d - r) / 2).
    fold = torch.zeros(2, 2 * radius + 1, k, device=weight.device)
    for a in range(2):
        for d in range(k):
            fold[a, (a + d - r) // 2 + radius, d] = 1
    folded = torch.einsum("aed,oidf,bgf->oabieg", fold, weight.float(), fold)
    return folded.reshape(c_out * 4, c_in, 2 * radius + 1, 2 * radius + 1).to(weight.dtype), radius


class ResizeConv2d(nn.Sequential):
    """`nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, k, 1, k // 2))`
    - same parameters, same state-dict keys (`1.weight`, `1.bias`), same function - computed as a
    sub-pixel convolution at the input resolution (see the module docstring). `ResizeConv2d(conv)`
    wraps an existing convolution (sharing its parameters). Zero or replicate padding: replicating
    the input's edge by R pixels and then resizing is replicating the resized image's edge by 2R."""

    def __init__(self, conv: nn.Conv2d):
        if not self.fits(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv)):
            raise ValueError("ResizeConv2d needs an odd square kernel, stride 1, 'same' zero or replicate padding")
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), conv)

    @staticmethod
    def fits(block: nn.Module) -> bool:
        """True for a Sequential(2x nearest Upsample, Conv2d with odd k, stride 1, padding k // 2 of
        zeros or replicated edges)."""
        if type(block) is not nn.Sequential or len(block) != 2:
            return False
        up, conv = block
        return (isinstance(up, nn.Upsample) and up.mode == "nearest" and up.scale_factor in (2, 2.0, (2.0, 2.0))
                and type(conv) is nn.Conv2d and conv.kernel_size[0] == conv.kernel_size[1]
                and conv.kernel_size[0] % 2 == 1 and conv.stride == (1, 1) and conv.dilation == (1, 1)
                and conv.groups == 1 and conv.padding == (conv.kernel_size[0] // 2,) * 2
                and conv.padding_mode in ("zeros", "replicate"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[1]
        weight, padding = subpixel_weight(conv.weight)
        bias = None if conv.bias is None else conv.bias.repeat_interleave(4)
        if conv.padding_mode == "replicate":
            x, padding = F.pad(x, (padding,) * 4, mode="replicate"), 0
        return F.pixel_shuffle(F.conv2d(x, weight, bias, padding=padding), 2)

    def frozen(self) -> nn.Sequential:
        """An inference module with the folded weight computed once: Conv2d(4 C_out) + PixelShuffle(2)."""
        conv = self[1]
        weight, padding = subpixel_weight(conv.weight.detach())
        folded = nn.Conv2d(conv.in_channels, conv.out_channels * 4, weight.shape[-1], 1, padding,
                           bias=conv.bias is not None, padding_mode=conv.padding_mode
                           ).to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            folded.weight.copy_(weight)
            if conv.bias is not None:
                folded.bias.copy_(conv.bias.repeat_interleave(4))
        return nn.Sequential(folded, nn.PixelShuffle(2))


# ---- small convolutions as one matrix product (CPU training) -------------------------------------
# The U-Net's innermost layers hold most of its weights (a 1024 -> 512 transposed convolution has
# 8.4 M) but see only a few pixels (1x1 to 16x16 at 256 px). In CPU training oneDNN re-lays-out such
# a weight for every call, forward and backward, which costs far more than the arithmetic; as one
# matrix product on the weight as it is stored, it does not. Above these output sizes (batch x
# height x width) oneDNN wins (bench/train_throughput.py measures both).
GEMM_CONV_MAX_OUTPUTS = 256
GEMM_CONV_TRANSPOSE_MAX_OUTPUTS = 2048


def _use_gemm(x: torch.Tensor, outputs: int, limit: int) -> bool:
    return x.device.type == "cpu" and torch.is_grad_enabled() and outputs <= limit


def _sharing(cls: type, layer: nn.Module, *args) -> nn.Module:
    """A `cls` built like `layer` (on the meta device, nothing allocated) holding `layer`'s parameters."""
    new = cls(*args, bias=layer.bias is not None, device="meta")
    new.weight, new.bias = layer.weight, layer.bias
    return new


class GemmConv2d(nn.Conv2d):
    """nn.Conv2d (zero padding, no groups or dilation) - same parameters and state-dict keys - that in
    CPU training on small outputs computes unfold + one matrix product instead (see above).
    `GemmConv2d.sharing(conv)`: one holding an existing convolution's parameters."""

    @classmethod
    def sharing(cls, conv: nn.Conv2d) -> GemmConv2d:
        return _sharing(cls, conv, conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        batch, _, height, width = x.shape
        out_h, out_w = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
        if self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros" or not _use_gemm(
                x, batch * out_h * out_w, GEMM_CONV_MAX_OUTPUTS):
            return super().forward(x)
        columns = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # (B, C_in * kh * kw, L)
        y = F.linear(columns.transpose(1, 2), self.weight.reshape(self.out_channels, -1), self.bias)  # (B, L, C_out)
        return y.transpose(1, 2).reshape(batch, self.out_channels, out_h, out_w)


class GemmConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (no groups, dilation or output padding) - same parameters and state-dict keys -
    that in CPU training on small outputs computes one matrix product + fold instead (see above).
    `GemmConvTranspose2d.sharing(deconv)`: one holding an existing layer's parameters."""

    @classmethod
    def sharing(cls, deconv: nn.ConvTranspose2d) -> GemmConvTranspose2d:
        return _sharing(cls, deconv, deconv.in_channels, deconv.out_channels, deconv.kernel_size, deconv.stride,
                        deconv.padding)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        batch, _, height, width = x.shape
        out_h, out_w = (height - 1) * sh - 2 * ph + kh, (width - 1) * sw - 2 * pw + kw
        if (output_size is not None or self.groups != 1 or self.dilation != (1, 1) or self.output_padding != (0, 0)
                or not _use_gemm(x, batch * out_h * out_w, GEMM_CONV_TRANSPOSE_MAX_OUTPUTS)):
            return super().forward(x, output_size)
        columns = torch.matmul(x.flatten(2).transpose(1, 2), self.weight.reshape(self.in_channels, -1))
        y = F.fold(columns.transpose(1, 2), (out_h, out_w), (kh, kw), padding=(ph, pw), stride=(sh, sw))
        return y if self.bias is None else y + self.bias[:, None, None].to(y.dtype)


# ---- a transposed convolution with few outputs, for inference ------------------------------------
def conv_transpose_phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """ConvTranspose2d(kernel 4, stride 2, padding 1) weight (C_in, C_out, 4, 4) -> Conv2d weight
    (4 C_out, C_in, 2, 2). Output pixel (2y + a, 2x + b) of the transposed convolution reads input rows
    y - 1 + a and y + a with kernel rows 3 - a and 1 - a (the same for columns), so one 2x2
    convolution over the input padded by 1 computes all four phases; channel c * 4 + a' * 2 + b'
    holds phase (1 - a', 1 - b') shifted by one pixel, and pixel_shuffle + a one-pixel crop
    interleaves them."""
    c_in, c_out = weight.shape[:2]
    folded = weight.reshape(c_in, c_out, 2, 2, 2, 2).flip(2, 4)  # kernel row 2 s + a' -> (tap 1 - s, a')
    return folded.permute(1, 3, 5, 0, 2, 4).reshape(c_out * 4, c_in, 2, 2)


class PhaseConvTranspose2d(nn.Module):
    """Inference form of an nn.ConvTranspose2d(C_in, C_out, 4, stride 2, padding 1): one 2x2
    convolution to 4 C_out channels + pixel_shuffle (see `conv_transpose_phase_weight`). The same
    function; for a few output channels (the U-Net's last layer, 64 -> 3) oneDNN runs it several
    times faster than the transposed convolution."""

    @staticmethod
    def fits(deconv: nn.Module) -> bool:
        """True for an nn.ConvTranspose2d of the geometry this form computes."""
        return isinstance(deconv, nn.ConvTranspose2d) and (
            deconv.kernel_size, deconv.stride, deconv.padding, deconv.output_padding, deconv.groups,
            deconv.dilation) == ((4, 4), (2, 2), (1, 1), (0, 0), 1, (1, 1))

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        if not self.fits(deconv):
            raise ValueError("PhaseConvTranspose2d needs kernel 4, stride 2, padding 1, no groups/dilation")
        weight = deconv.weight.detach()
        self.conv = nn.Conv2d(deconv.in_channels, deconv.out_channels * 4, 2, 1, 1, bias=deconv.bias is not None)
        self.conv.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(conv_transpose_phase_weight(weight.float()))
            if deconv.bias is not None:
                self.conv.bias.copy_(deconv.bias.detach().repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)[..., 1:-1, 1:-1]


# ---- applying them -------------------------------------------------------------------------------
def _replace(model: nn.Module, swap) -> None:
    """Replace each child module `m` of `model` (at any depth) for which swap(m) is not None."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            new = swap(child)
            if new is not None:
                setattr(module, name, new)


def training_layers(model: nn.Module) -> nn.Module:
    """In place: the faster training forms of `model`'s layers, sharing their parameters - a pix2pix
    U-Net's convolutions and transposed convolutions as `GemmConv2d` / `GemmConvTranspose2d`, resize +
    convolution blocks as `ResizeConv2d`. Returns `model`; its state dict is unchanged."""
    from .pix2pix import Pix2PixGenerator

    unet = isinstance(model, Pix2PixGenerator)

    def swap(child: nn.Module) -> nn.Module | None:
        if ResizeConv2d.fits(child):
            return ResizeConv2d(child[1])
        if not unet or not isinstance(child, nn.modules.conv._ConvNd) or child.groups != 1 or child.dilation != (1, 1):
            return None
        if type(child) is nn.Conv2d and child.padding_mode == "zeros":
            return GemmConv2d.sharing(child)
        if type(child) is nn.ConvTranspose2d and child.output_padding == (0, 0):
            return GemmConvTranspose2d.sharing(child)
        return None

    _replace(model, swap)
    return model


class FastInstanceNorm(nn.Module):
    """nn.InstanceNorm2d(affine=True, track_running_stats=False) for inference on channels-last bf16.

    Two kernels compute it, and which is faster depends on the shape: a group norm with one channel per
    group works on channels-last bf16 directly in one pass, but when the image has fewer pixels than
    channels it is much slower than instance norm. So: group norm while H * W > C, instance norm
    otherwise. Statistics and the affine transform are in fp32 either way."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.eps = norm.eps
        self.register_buffer("weight", norm.weight.detach().float().clone())
        self.register_buffer("bias", norm.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] * x.shape[-1] > x.shape[1]:
            return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)
        out = F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        return out.contiguous(memory_format=torch.channels_last)


def inference_copy(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """A copy of a generator prepared for CPU inference in "bf16" or "fp32": eval mode, channels-last,
    convolution, linear and embedding weights in that precision (batch norm keeps fp32 statistics),
    `ResizeConv2d` with its folded weight computed once, `PhaseConvTranspose2d` for a last transposed
    convolution to a few channels, `FastInstanceNorm`, in-place activations. `model` is left
    untouched; the copy records `inference_precision`. Prepare it once and reuse it."""
    import copy

    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'bf16' or 'fp32', got {precision!r}")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    fast = copy.deepcopy(model).eval()

    def reformulate(child: nn.Module) -> nn.Module | None:
        if ResizeConv2d.fits(child):  # resize + conv: the folded weight, computed once
            return ResizeConv2d(child[1]).frozen()
        if PhaseConvTranspose2d.fits(child) and child.out_channels <= 16:
            return PhaseConvTranspose2d(child)  # the U-Net's last layer
        return None

    def cast(child: nn.Module) -> nn.Module | None:
        if isinstance(child, nn.InstanceNorm2d) and child.affine and not child.track_running_stats:
            return FastInstanceNorm(child)
        if isinstance(child, (nn.ReLU, nn.LeakyReLU)):
            child.inplace = True  # the input is a fresh convolution or norm output
        elif isinstance(child, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            child.to(dtype)
        return None

    _replace(fast, reformulate)
    _replace(fast, cast)
    fast = fast.to(memory_format=torch.channels_last)
    fast.inference_precision = precision
    return fast


# glibc serves allocations of 32 MiB and more with a fresh mmap, and the first touch of every page of
# it costs a page fault, which made elementwise ops on such tensors many times slower per byte than on
# slightly smaller ones. Tile batches are cut into chunks whose largest activation stays below this.
CHUNK_BYTES = 28 * 2**20


def tile_chunk(generator: nn.Module, side: int, dtype: torch.dtype) -> int:
    """Tiles per forward pass of a pix2pix U-Net so that its largest activation - the last decoder
    block's concatenation, 2 * base channels at side / 2 - stays under CHUNK_BYTES."""
    base = generator.down[0][0].out_channels
    per_tile = 2 * base * (side // 2) ** 2 * torch.finfo(dtype).bits // 8
    return max(1, CHUNK_BYTES // per_tile)
