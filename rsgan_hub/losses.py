"""GAN losses as small pure functions of discriminator logits; the training scripts compose them.

* Non-saturating BCE (Goodfellow et al. 2014) with one-sided label smoothing of the real targets
  (Salimans et al. 2016, "Improved Techniques for Training GANs") - the original DCGAN recipe.
* Hinge loss (Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018 with spectral normalisation).
* pix2pix's L1 reconstruction term (Isola et al. 2017).
* An SSIM term, 1 - SSIM (Wang et al. 2004), for RGB outputs: L1 + SSIM follows Zhao et al. 2017,
  "Loss Functions for Image Restoration with Neural Networks"; it rewards local contrast and structure
  where L1 alone rewards the per-pixel median.
* A soft Dice term over class probabilities (Milletari et al. 2016, "V-Net"), a differentiable
  stand-in for per-class IoU that weighs a thin class (roads) as much as a wide one (background).

Logits may be any shape ((B,) for DCGAN, (B, 1, h, w) for a PatchGAN); losses are means over all
elements and are computed in fp32 even when the logits come out of a bf16 autocast region.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                           real_label_range: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), with real targets drawn from U(real_label_range)."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    low, high = real_label_range
    real_targets = torch.empty_like(real_logits).uniform_(low, high) if low < high else torch.full_like(real_logits, low)
    loss_real = F.binary_cross_entropy_with_logits(real_logits, real_targets)
    loss_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return loss_real + loss_fake


def bce_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -log D(G(z))."""
    fake_logits = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))."""
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-mean(D(G(z)))."""
    return -fake_logits.float().mean()


def l1_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, in fp32."""
    return F.l1_loss(prediction.float(), target.float())


def soft_dice_loss(probabilities: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                   smooth: float = 1.0) -> torch.Tensor:
    """1 - the mean soft Dice score over the classes present in `targets`, in fp32.

    probabilities: (B, C, H, W), summing to 1 over C; targets: (B, H, W) class ids, `ignore_index`
    where a pixel counts for no class. Each class's score is 2 |p * y| / (|p| + |y|) over the batch's
    valid pixels, so a class covering 2 % of the pixels counts as much as one covering 80 %.
    """
    probabilities = probabilities.float()
    valid = targets != ignore_index  # (B, H, W)
    one_hot = F.one_hot(targets.masked_fill(~valid, 0), probabilities.shape[1]).permute(0, 3, 1, 2).float()
    one_hot = one_hot * valid[:, None]
    probabilities = probabilities * valid[:, None]
    overlap = (probabilities * one_hot).sum(dim=(0, 2, 3))  # (C,)
    target_pixels = one_hot.sum(dim=(0, 2, 3))  # (C,)
    dice = (2 * overlap + smooth) / (probabilities.sum(dim=(0, 2, 3)) + target_pixels + smooth)
    present = target_pixels > 0
    if not present.any():
        return probabilities.sum() * 0  # no valid pixel: no loss, but keep the graph
    return 1 - dice[present].mean()


def ssim_loss(prediction: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """1 - SSIM between two (B, C, H, W) images in [-1, 1], in fp32 even inside an autocast region.

    The SSIM `rsgan evaluate` reports (torchmetrics': Gaussian window 11, sigma 1.5, per channel,
    over the positions where the window fits, averaged), written with the Gaussian as two 1-D
    passes: 22 multiply-adds per pixel and map instead of 121 (`tests/test_train_utils.py` checks
    it against torchmetrics). Its luminance term compares means as if 0 were black, so the images
    are mapped to [0, 1] first: in [-1, 1] a mid-grey mean near 0 would score differently.
    """
    with torch.autocast(device_type=prediction.device.type, enabled=False):  # x^2 - mu^2 needs fp32
        x, y = (prediction.float() + 1) / 2, (target.float() + 1) / 2
        channels = x.shape[1]
        offsets = torch.arange(window, dtype=torch.float32, device=x.device) - (window - 1) / 2
        gaussian = torch.exp(-offsets.square() / (2 * sigma ** 2))
        gaussian = gaussian / gaussian.sum()
        maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W): local means of each
        k = maps.shape[1]
        maps = F.conv2d(maps, gaussian.view(1, 1, 1, window).expand(k, 1, 1, window), groups=k)
        maps = F.conv2d(maps, gaussian.view(1, 1, window, 1).expand(k, 1, window, 1), groups=k)
        mean_x, mean_y, mean_xx, mean_yy, mean_xy = maps.split(channels, dim=1)  # (B, C, H - window + 1, ...)
        c1, c2 = 0.01 ** 2, 0.03 ** 2  # the usual constants for a data range of 1
        variance_x, variance_y = mean_xx - mean_x.square(), mean_yy - mean_y.square()
        covariance = mean_xy - mean_x * mean_y
        ssim = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
            (mean_x.square() + mean_y.square() + c1) * (variance_x + variance_y + c2))
        return 1 - ssim.mean()
