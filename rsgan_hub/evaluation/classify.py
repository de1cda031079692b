"""Training and testing `SceneClassifier`s: the shipped feature extractor (`train/classifier.py`) and the
classification accuracy score (Ravuri & Vinyals 2019, "Classification Accuracy Score for Conditional
Generative Models"): a classifier trained only on generated images, tested on real ones, next to the
same recipe trained on real images.

Images are held as uint8 tensors (N, 3, S, S) - a few thousand small scenes fit in memory - and turned
into [-1, 1] floats batch by batch. Aerial scenes have no "up", so training augments with the eight
flips/rotations of the square (and, when asked, random square crops).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..models import SceneClassifier


def to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1], the project's pixel convention."""
    return images_uint8.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float (B, 3, H, W) in [-1, 1] -> uint8, rounded as `tensor_to_pil` does."""
    return images.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def random_dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply one of the 8 flips/rotations of the square to each image of (B, C, S, S)."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    turns = torch.randint(0, 4, (len(images),), generator=generator)
    out = images.clone()
    for k in (1, 2, 3):
        chosen = turns == k
        if chosen.any():
            out[chosen] = torch.rot90(images[chosen], k, dims=(-2, -1))
    return out


def random_crop(images: torch.Tensor, generator: torch.Generator, min_scale: float) -> torch.Tensor:
    """Crop a random square of side U(min_scale, 1) * S at a random place from each image of (B, C, S, S)
    and scale it back up to S (bilinear), all images in one `grid_sample`."""
    scale = min_scale + (1 - min_scale) * torch.rand(len(images), generator=generator)
    shift = (1 - scale) * (torch.rand(2, len(images), generator=generator) * 2 - 1)  # (2, B), crop stays inside
    theta = torch.zeros(len(images), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, 0, 2], theta[:, 1, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def fit_classifier(
    model: SceneClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    description: str = "classifier",
    steps: int | None = None,
    crop_scale: float = 1.0,
    leave: bool = True,
) -> SceneClassifier:
    """Train `model` on uint8 images (N, 3, S, S) and int64 labels (N,): AdamW, one-cycle cosine
    schedule, label smoothing 0.1, dihedral augmentation. Returns the model in eval mode.

    `steps` fixes the number of optimiser steps whatever N (default: `epochs` passes over the images);
    `crop_scale` < 1 adds random square crops of at least that fraction of the side (`random_crop`);
    `leave` keeps the progress bar on screen when done."""
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images (> 0), got {len(images)} images, {len(labels)} labels")
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    images = F.interpolate(to_unit_range(images), size=model.image_size, mode="bilinear", antialias=True,
                           align_corners=False) if images.shape[-1] != model.image_size else to_unit_range(images)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps = steps or epochs * math.ceil(len(images) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps)
    model.train()
    progress = tqdm(total=steps, desc=f"training {description}", unit="step", leave=leave)
    step = epoch = 0
    while step < steps:
        order = torch.randperm(len(images), generator=rng)
        for start in range(0, len(images), batch_size):
            if step == steps:
                break
            index = order[start:start + batch_size]
            batch = random_dihedral(images[index], rng)
            if crop_scale < 1:
                batch = random_crop(batch, rng, crop_scale)
            loss = F.cross_entropy(model(batch), labels[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            progress.update()
            progress.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        epoch += 1
    progress.close()
    return model.eval()


@torch.inference_mode()
def predict(model: SceneClassifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted class indices (N,) for uint8 or [-1, 1] float images (N, 3, H, W)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        batch = to_unit_range(batch) if batch.dtype == torch.uint8 else batch
        out.append(model(batch).argmax(1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy(model: SceneClassifier, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Overall accuracy and per-class accuracy (num_classes,) (nan for classes without images)."""
    correct = (predict(model, images) == labels).float()
    per_class = torch.full((model.num_classes,), float("nan"))
    for c in labels.unique():
        per_class[c] = correct[labels == c].mean()
    return correct.mean().item(), per_class
