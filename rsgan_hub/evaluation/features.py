"""Feature-space metrics: FID (Heusel et al. 2017), KID (Binkowski et al. 2018) and k-NN precision and
recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative Models").

Images are mapped once to features - by the shipped remote-sensing `SceneClassifier` (default) or by
torchmetrics' Inception-v3 when its weights are available - and all three metrics are computed from
the same (N, d) feature matrices. FID and KID are torchmetrics' own implementations: they receive the
feature matrices through `Precomputed`, a feature "extractor" that returns its input, so no statistic
is hand-written and no image goes through the network twice. Precision is the fraction of generated
samples inside the real manifold (the union of balls reaching each real sample's k-th nearest real
neighbour); recall swaps the roles. Mode collapse shows as high precision with low recall.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from tqdm.auto import tqdm

from ..models import SceneClassifier
from ..io import first_line

# The classifier trained by train/classifier.py and shipped with the repository.
DEFAULT_CLASSIFIER = Path(__file__).resolve().parents[2] / "pretrained" / "scene-classifier"


class Precomputed(nn.Module):
    """Identity "feature extractor": lets torchmetrics' FID/KID consume features computed elsewhere."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class InceptionFeatures(nn.Module):
    """torchmetrics' FID Inception-v3 (2048-d pool features) on [-1, 1] images; needs torch-fidelity and
    its weights (downloaded from GitHub on first use)."""

    def __init__(self):
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.inception = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
        except ModuleNotFoundError as err:
            raise ValueError("--features inception needs torch-fidelity (pip install torch-fidelity); "
                             "the default --features classifier needs nothing extra") from err
        except Exception as err:  # torch-fidelity downloads the weights on construction
            raise ValueError(f"--features inception: Inception weights unavailable ("
                             f"{first_line(err, with_type=True)}); use --features classifier") from err
        self.num_features = 2048

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        uint8 = images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)  # what torchmetrics expects
        return self.inception(uint8).reshape(len(images), -1)


class ClassifierFeatures(nn.Module):
    """Penultimate features of a `SceneClassifier`."""

    def __init__(self, classifier: SceneClassifier):
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images)


def load_feature_extractor(features: str = "classifier", classifier: str | Path | None = None) -> nn.Module:
    """"classifier" (the shipped SceneClassifier, or `classifier`: a folder / repo id) or "inception"."""
    if features == "inception":
        return InceptionFeatures().eval()
    if features != "classifier":
        raise ValueError(f"features must be 'classifier' or 'inception', got {features!r}")
    return ClassifierFeatures(SceneClassifier.from_pretrained(classifier or DEFAULT_CLASSIFIER)).eval()


@torch.inference_mode()
def extract_features(extractor: nn.Module, batches: Iterable[torch.Tensor], total: int | None = None,
                     description: str = "features") -> torch.Tensor:
    """Concatenate extractor(batch) over batches of [-1, 1] images -> (N, d) float64."""
    out = []
    with tqdm(total=total, desc=description, unit="img", leave=False) as progress:
        for batch in batches:
            out.append(extractor(batch).double())
            progress.update(len(batch))
    if not out:
        raise ValueError(f"no images to compute {description} from")
    return torch.cat(out)


def fid_kid(real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 100, kid_subset_size: int = 1000,
            seed: int = 0) -> dict[str, float]:
    """torchmetrics FID and KID (mean, std over subsets) between feature matrices (N, d) and (M, d).

    The KID subset size is capped at the smaller set; KID's subset draws are seeded, so repeated calls agree.
    """
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"FID/KID need at least 2 images per set, got {len(real)} real and {len(fake)} generated")
    fid = FrechetInceptionDistance(feature=Precomputed(real.shape[1]))  # accumulates in float64
    fid.update(real, real=True)
    fid.update(fake, real=False)
    with warnings.catch_warnings():  # "will save all extracted features": they are held here anyway
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=Precomputed(real.shape[1]), subsets=kid_subsets,
                                      subset_size=min(kid_subset_size, len(real), len(fake)))
    kid.update(real.float(), real=True)
    kid.update(fake.float(), real=False)
    with torch.random.fork_rng():  # KID draws its subsets with the global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": max(float(fid.compute()), 0.0), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def _kth_neighbour_radius(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """(N,) distance from each row to its k-th nearest other row."""
    radii = []
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start:start + chunk], features)  # (chunk, N); column of self is 0
        radii.append(d.kthvalue(k + 1, dim=1).values)  # k + 1: skip the zero distance to itself
    return torch.cat(radii)


def _inside(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """(Q,) bool: is each query within radii[j] of some support[j]?"""
    out = []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start:start + chunk], support)  # (chunk, S)
        out.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of feature matrices, k-NN radius k."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} need more than {k} images per set")
    real, fake = real.double(), fake.double()
    precision = _inside(fake, real, _kth_neighbour_radius(real, k)).double().mean()
    recall = _inside(real, fake, _kth_neighbour_radius(fake, k)).double().mean()
    return {"precision": float(precision), "recall": float(recall)}
