"""A compact remote-sensing scene classifier, the feature space of rsgan_hub's evaluation.

FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium") and KID (Binkowski et al. 2018, "Demystifying MMD GANs") compare images through the
penultimate features of a classifier. The usual Inception-v3 was trained on ImageNet photographs,
which judge aerial scenes poorly (and its weights cannot be downloaded everywhere), so rsgan_hub
ships this small VGG-style CNN (Simonyan & Zisserman 2015) trained on AID scenes (Xia et al. 2017)
instead: `features(images)` gives the globally pooled last-stage activations. Inputs of any size
are resized to `image_size` first, so generators of different resolutions are judged alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hub import HubModel, find_class


class SceneClassifier(HubModel, tags=["image-classification", "evaluation"], pipeline_tag="image-classification"):
    """RGB scene in [-1, 1] -> class logits; `features` -> (B, channels[-1]) penultimate features.

    Args:
        image_size: side the inputs are resized to (antialiased bilinear) before the network.
        channels: width of each stage. The stem is a stride-2 convolution to channels[0]; every
            further stage is `convs_per_stage` 3x3 conv-BN-ReLU, max-pooled by 2 except the last.
        convs_per_stage: 3x3 convolutions in each stage after the stem.
        num_classes: number of scene classes.
        class_names: their names, stored in config.json (the order of the logits).
        dropout: dropout before the linear head (training only).
    """

    card_title = "rsgan_hub remote-sensing scene classifier"
    card_summary = ("A compact CNN scene classifier for aerial images. rsgan_hub uses its penultimate features as "
                    "the feature space of FID, KID and precision/recall (`rsgan evaluate`).")
    card_usage = ("import torch\n"
                  "images = torch.rand(4, 3, 128, 128) * 2 - 1  # RGB in [-1, 1], any size\n"
                  "features = model.features(images)  # (4, num_features)\n"
                  "names = [model.class_names[i] for i in model(images).argmax(1)]")
    card_cli_usage = "rsgan evaluate --model user/rs-dcgan --dataset user/aid-scenes --classifier {repo_id}"
    card_intended_use = ("A feature extractor for comparing image sets (FID/KID, precision/recall) and a sanity check "
                         "of generated scenes. Trained on a few thousand small AID scenes: not a production land-cover "
                         "classifier.")

    def __init__(
        self,
        image_size: int = 64,
        channels: list[int] | None = None,
        convs_per_stage: int = 1,
        num_classes: int = 30,
        class_names: list[str] | None = None,
        dropout: float = 0.3,
    ):
        super().__init__()
        channels = list(channels or [32, 64, 128, 256])
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        if image_size < 2 ** len(channels):
            raise ValueError(f"image_size {image_size} is too small for {len(channels)} stages")
        self.image_size, self.num_classes = image_size, num_classes
        self.class_names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
        self.num_features = channels[-1]  # read by torchmetrics' FID/KID for custom extractors

        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]),
                                   nn.ReLU()]  # (B, C0, S/2, S/2)
        c_in = channels[0]
        for i, c_out in enumerate(channels[1:]):
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
            if i < len(channels) - 2:
                layers.append(nn.MaxPool2d(2))  # the last stage is pooled globally instead
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels[-1], num_classes))

    def default_repo_name(self) -> str:
        return "rs-scene-classifier"

    def class_index(self, name: str) -> int | None:
        """Index of a class by name (case-insensitive), or None when the classifier does not know it."""
        return find_class(self.class_names, name)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, num_features) penultimate features."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        return self.body(images).mean(dim=(2, 3))  # global average pool of (B, C, s, s)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, num_classes) logits."""
        return self.head(self.features(images))
