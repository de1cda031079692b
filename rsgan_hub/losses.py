"""GAN losses as small pure functions of discriminator logits; the training scripts compose them.

* Non-saturating BCE (Goodfellow et al. 2014) with one-sided label smoothing of the real targets
  (Salimans et al. 2016, "Improved Techniques for Training GANs") - the original DCGAN recipe.
* Hinge loss (Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018 with spectral normalisation).
* pix2pix's L1 reconstruction term (Isola et al. 2017).
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
