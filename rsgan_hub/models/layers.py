"""Layers that compute exactly what a torch.nn layer computes, in a form that runs faster on CPUs.

Each keeps the torch.nn layer's parameters and state-dict keys, so any checkpoint loads, and each is
tested against the layer it replaces (values and gradients):

* `ResizeConv2d` - a 2x nearest-neighbour resize followed by a k x k convolution (k odd, "same"
  padding), the DCGAN's upsampling. Each of the four output phases - (even | odd row) x (even | odd
  column) - sees only a (2R + 1)^2 window of the input, R = ceil(k / 4), because the resized image
  repeats every input pixel twice along each axis: taps that land on the same input pixel sum into
  one weight. `subpixel_weight` folds the k x k kernel into one (2R + 1)^2 kernel with 4x the output
  channels and `pixel_shuffle` interleaves the phases (Shi et al. 2016, "Real-Time Single Image and
  Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network"). For k = 5 that
  is 36 multiply-adds per input pixel and channel pair instead of 100, and the 4x larger resized
  tensor is never built (nor stored for backward).
* `GemmConv2d` / `GemmConvTranspose2d` - the U-Net's convolutions; in CPU training, small outputs run
  as unfold / fold + one matrix product (see the section below).
* `PhaseConvTranspose2d` - inference form of a stride-2 kernel-4 transposed convolution with few
  output channels, as one 2x2 convolution + `pixel_shuffle`.
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
    sub-pixel convolution at the input resolution (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[1]
        weight, padding = subpixel_weight(conv.weight)
        bias = None if conv.bias is None else conv.bias.repeat_interleave(4)
        return F.pixel_shuffle(F.conv2d(x, weight, bias, padding=padding), 2)

    def frozen(self) -> nn.Sequential:
        """An inference module with the folded weight computed once: Conv2d(4 C_out) + PixelShuffle(2)."""
        conv = self[1]
        weight, padding = subpixel_weight(conv.weight.detach())
        folded = nn.Conv2d(conv.in_channels, conv.out_channels * 4, weight.shape[-1], 1, padding,
                           bias=conv.bias is not None).to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            folded.weight.copy_(weight)
            if conv.bias is not None:
                folded.bias.copy_(conv.bias.repeat_interleave(4))
        return nn.Sequential(folded, nn.PixelShuffle(2))


# ---- small convolutions as one matrix product (CPU training) -------------------------------------
# The U-Net's innermost layers hold most of its weights (a 1024 -> 512 transposed convolution has
# 8.4 M) but see only a few pixels (1x1 to 16x16 at 256 px). In CPU training oneDNN re-lays-out such
# a weight for every call, forward and backward, which costs far more than the arithmetic: measured
# on this project's 2-core CPU under bf16 autocast at batch 1, forward + backward of the 1024 -> 512
# transposed convolution at 4x4 took 64 ms through F.conv_transpose2d and 18 ms as unfold/fold + one
# matrix product on the weight as it is stored; summed over the generator's inner layers, about
# 160 ms of a 480 ms pix2pix step. Above these output sizes (batch x height x width) oneDNN wins.
# (Running these products in fp32 to skip autocast's weight casts measured slower: 1.69x the
# baseline step against 2.14x.)
GEMM_CONV_MAX_OUTPUTS = 256
GEMM_CONV_TRANSPOSE_MAX_OUTPUTS = 2048


def _use_gemm(x: torch.Tensor, outputs: int, limit: int) -> bool:
    return x.device.type == "cpu" and torch.is_grad_enabled() and outputs <= limit


class GemmConv2d(nn.Conv2d):
    """nn.Conv2d (zero padding, no groups or dilation) - same parameters and state-dict keys - that in
    CPU training on small outputs computes unfold + one matrix product instead (see above)."""

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
    that in CPU training on small outputs computes one matrix product + fold instead (see above)."""

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


def reference_layers(model: nn.Module) -> nn.Module:
    """Swap every GemmConv2d / GemmConvTranspose2d in `model` for the plain torch.nn layer sharing its
    parameters, in place: the networks as a reference implementation would build them (benchmarks)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) in (GemmConv2d, GemmConvTranspose2d):
                child.__class__ = child.__class__.__mro__[1]  # nn.Conv2d / nn.ConvTranspose2d, same state
    return model


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
    function; for a few output channels (the U-Net's last layer, 128 -> 3) oneDNN runs it 2.6x faster
    than the transposed convolution (7.3 against 19.3 ms for 7 tiles in bf16, measured)."""

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
