"""Scoring pix2pix translators (Isola et al. 2017) on paired test splits, each beside a trivial baseline.

satellite -> map. Pixel accuracy (Isola et al.'s map metric: a pixel is right when every RGB channel is
within delta of the real map; delta = 8, 16, 32) and RMSE. Map tiles are mostly background, so a
constant image of the background colour already scores about 0.9 at delta 16: we also report the
accuracy over the real map's non-background pixels and the mean IoU over the legend classes, and the
constant-background baseline's scores beside the model's.

map -> satellite. L1 and RMSE in 8-bit levels, PSNR and SSIM (torchmetrics, per tile then averaged),
and FID/KID in the scene-feature space. Baseline: the "blurred mean" image - every map pixel painted
with the mean satellite colour of its legend class, then Gaussian-blurred (sigma 4 px).

The legend. The map halves of the Mumbai tiles (a Google-style rendering) were clustered in RGB
(k-means, k = 10, 900,000 pixels of 300 tiles; `train/map_legend.py` redoes it) and the centres named
by eye: background (58 % of pixels), building fill and outline (22 % + 4.5 %), road (11 %), water
(1.3 %), zone fill (yellow commercial areas, 0.5 %) and labels (text and icons, 2.5 %). Background,
building and road are only 6-14 levels apart, so some samples' k-means merges them; the prototypes are
from a run that kept them apart. Vegetation is almost absent (< 0.1 % green pixels, no cluster of its
own): its prototype is the commonest green of the tiles. A pixel's class is that of its nearest
prototype; label pixels are ignored by the mean IoU (no translator can know the text). `MAP_LEGEND`
also stores each class's mean satellite colour, for the map -> satellite baseline.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from tqdm.auto import tqdm

from ..data import load_pair_dataset
from ..io import pil_to_tensor
from ..models import Pix2PixGenerator
from .classify import to_uint8
from .features import extract_features, fid_kid, load_feature_extractor

# class -> (prototype map colours, mean satellite colour of the class's pixels), 8-bit RGB.
MAP_LEGEND = {
    "background": ([(249, 248, 249)], (78, 73, 74)),
    "building": ([(241, 243, 243), (225, 227, 230)], (92, 87, 89)),
    "road": ([(254, 255, 255)], (74, 70, 73)),
    "water": ([(154, 189, 245)], (57, 58, 62)),
    "vegetation": ([(200, 232, 216)], (82, 78, 79)),
    "zone": ([(249, 220, 153)], (92, 90, 95)),
    "label": ([(120, 140, 160), (173, 181, 189), (199, 139, 123), (231, 157, 30)], (83, 79, 81)),
}
LEGEND_NAMES = list(MAP_LEGEND)
IGNORED = LEGEND_NAMES.index("label")
BACKGROUND = LEGEND_NAMES.index("background")
_PROTOTYPES = torch.tensor([c for name in LEGEND_NAMES for c in MAP_LEGEND[name][0]], dtype=torch.float32)
_OWNER = torch.tensor([i for i, name in enumerate(LEGEND_NAMES) for _ in MAP_LEGEND[name][0]])
# The classes a translator can predict (all but the labels) and the colour each is drawn in: the
# palette of legend generators (`Pix2PixGenerator(palette=LEGEND_PALETTE)`), index = LEGEND_NAMES index.
PREDICTED_CLASSES = [name for name in LEGEND_NAMES if name != "label"]
LEGEND_PALETTE = [list(MAP_LEGEND[name][0][0]) for name in PREDICTED_CLASSES]
LEGEND_OUTLINES = {"building": list(MAP_LEGEND["building"][0][1])}  # the style outlines buildings


def legend_classes(maps: torch.Tensor) -> torch.Tensor:
    """uint8 maps (B, 3, H, W) -> (B, H, W) legend class indices (nearest prototype colour)."""
    pixels = maps.permute(0, 2, 3, 1).float()  # (B, H, W, 3)
    distances = (pixels[..., None, :] - _PROTOTYPES).square().sum(-1)  # (B, H, W, prototypes)
    return _OWNER[distances.argmin(-1)]


def legend_class_weights(dataset, map_column: str = "map", max_maps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy weights of the predicted legend classes from their pixel shares in the first
    `max_maps` maps of `dataset`: 1/sqrt(share), scaled so the commonest class weighs 1, capped at 10
    (an absent class gets 10). Returns (weights, shares), each (len(PREDICTED_CLASSES),)."""
    counts = torch.zeros(len(LEGEND_NAMES))
    for i in range(min(max_maps, len(dataset))):
        maps = to_uint8(pil_to_tensor(dataset[i][map_column]))[None]
        counts += torch.bincount(legend_classes(maps).flatten(), minlength=len(counts)).float()
    counts = counts[[LEGEND_NAMES.index(name) for name in PREDICTED_CLASSES]]  # text and icons not counted
    share = counts / counts.sum()
    return (share.max() / share.clamp(min=1e-12)).sqrt().clamp(max=10.0), share


def describe_class_weights(weights: torch.Tensor, share: torch.Tensor) -> str:
    """One line of `legend_class_weights`' result: each class's weight and pixel share."""
    return ", ".join(f"{n} {w:.2f} ({s:.1%})" for n, w, s in zip(PREDICTED_CLASSES, weights.tolist(), share.tolist()))


def constant_map(like: torch.Tensor) -> torch.Tensor:
    """The sat->map baseline: uint8 images of the legend's background colour, shaped like `like`."""
    colour = torch.tensor(MAP_LEGEND["background"][0][0], dtype=torch.uint8)
    return colour[None, :, None, None].expand_as(like).clone()


def blurred_mean_satellite(maps: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """The map->sat baseline: each pixel painted with its legend class's mean satellite colour, blurred."""
    means = torch.tensor([MAP_LEGEND[name][1] for name in LEGEND_NAMES], dtype=torch.float32)  # (classes, 3)
    painted = means[legend_classes(maps)].permute(0, 3, 1, 2)  # (B, 3, H, W)
    radius = int(3 * sigma)
    kernel = torch.exp(-torch.arange(-radius, radius + 1).float().square() / (2 * sigma**2))
    kernel = (kernel / kernel.sum())[None, None]  # separable Gaussian, (1, 1, 2r+1)
    flat = painted.reshape(-1, 1, *painted.shape[-2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel[..., None, :])
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel[..., :, None])
    return flat.reshape(painted.shape).round().clamp(0, 255).to(torch.uint8)


class MapScores:
    """Accumulates the sat->map scores over batches of uint8 (B, 3, H, W) predicted and real maps."""

    def __init__(self):
        self.total = self.nonbg = self.squared_error = 0.0
        self.correct = {8: 0.0, 16: 0.0, 32: 0.0}
        self.nonbg_correct = 0.0
        self.confusion = torch.zeros(len(LEGEND_NAMES), len(LEGEND_NAMES), dtype=torch.long)  # [real, predicted]

    def update(self, predicted: torch.Tensor, real: torch.Tensor) -> None:
        difference = (predicted.float() - real.float()).abs()  # (B, 3, H, W) in 8-bit levels
        worst = difference.amax(dim=1)  # (B, H, W): every channel must be within delta
        real_classes, predicted_classes = legend_classes(real), legend_classes(predicted)
        foreground = real_classes != BACKGROUND
        self.total += worst.numel()
        self.nonbg += foreground.sum().item()
        for delta in self.correct:
            self.correct[delta] += (worst <= delta).sum().item()
        self.nonbg_correct += ((worst <= 16) & foreground).sum().item()
        self.squared_error += difference.square().sum().item()
        index = real_classes.flatten() * len(LEGEND_NAMES) + predicted_classes.flatten()
        self.confusion += torch.bincount(index, minlength=len(LEGEND_NAMES) ** 2).view(len(LEGEND_NAMES), -1)

    def compute(self) -> dict[str, float]:
        confusion = self.confusion.clone()
        confusion[IGNORED] = 0  # pixels whose real class is text/icons do not count
        intersection = confusion.diag().float()
        union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
        present = union > 0
        present[IGNORED] = False
        scores = {f"pixel_acc_{d}": c / self.total for d, c in self.correct.items()}
        scores["nonbg_acc_16"] = self.nonbg_correct / self.nonbg if self.nonbg else float("nan")
        iou = intersection / union.clamp(min=1)
        scores["legend_miou"] = iou[present].mean().item()
        # Legend accuracy where the real map is neither background nor a label: does the model draw
        # a building where there is one (delta-accuracy flatters a near-white map; this does not).
        foreground = confusion[[c for c in range(len(LEGEND_NAMES)) if c not in (BACKGROUND, IGNORED)]]
        foreground_total = foreground.sum().item()
        scores["nonbg_legend_acc"] = (intersection.sum() - intersection[BACKGROUND]).item() / foreground_total \
            if foreground_total else float("nan")
        for c, name in enumerate(LEGEND_NAMES):
            if c != IGNORED:
                scores[f"iou_{name}"] = iou[c].item() if present[c] else float("nan")
        scores["rmse"] = (self.squared_error / (3 * self.total)) ** 0.5
        return scores


class SatelliteScores:
    """Accumulates the map->sat scores (all but FID/KID) over uint8 (B, 3, H, W) batches."""

    def __init__(self):
        self.count, self.pixels, self.abs_error, self.squared_error = 0, 0, 0.0, 0.0
        self.psnr, self.ssim = 0.0, 0.0

    def update(self, predicted: torch.Tensor, real: torch.Tensor) -> None:
        p, r = predicted.float(), real.float()
        self.abs_error += (p - r).abs().sum().item()
        self.squared_error += (p - r).square().sum().item()
        self.pixels += p.numel()
        psnr = peak_signal_noise_ratio(p, r, data_range=255.0, reduction="none", dim=(1, 2, 3))  # (B,)
        self.psnr += psnr.clamp(max=100.0).sum().item()  # identical tiles would be +inf
        self.ssim += structural_similarity_index_measure(p, r, data_range=255.0, reduction="sum").item()
        self.count += len(p)

    def compute(self) -> dict[str, float]:
        return {"l1": self.abs_error / self.pixels, "rmse": (self.squared_error / self.pixels) ** 0.5,
                "psnr": self.psnr / self.count, "ssim": self.ssim / self.count}


def _pair_batches(dataset, source: str, target: str, batch_size: int):
    """(source, target) uint8 batches (B, 3, H, W); consecutive pairs of one size share a batch."""
    batch: list[tuple[torch.Tensor, torch.Tensor]] = []
    for example in dataset:
        s, t = to_uint8(pil_to_tensor(example[source])), to_uint8(pil_to_tensor(example[target]))
        if s.shape != t.shape:
            raise ValueError(f"a pair's {source} and {target} differ in size: {tuple(s.shape)} vs {tuple(t.shape)}")
        if batch and (len(batch) == batch_size or batch[0][0].shape != s.shape):
            yield torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
            batch = []
        batch.append((s, t))
    if batch:
        yield torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])


def evaluate_translator(
    generator: Pix2PixGenerator,
    dataset,
    split: str = "test",
    direction: str | None = None,
    features: str = "classifier",
    classifier: str | None = None,
    max_pairs: int | None = None,
    batch_size: int = 4,
    seed: int = 0,
    reference_split: str | None = None,
) -> dict:
    """Score a pix2pix generator on the pairs of `split`, beside the baseline of its direction.

    Args:
        generator: a Pix2PixGenerator; its `direction` ("sat2map"/"map2sat") is used unless `direction` is given.
        dataset: a spec for `load_pair_dataset`, a DatasetDict, or a `datasets.Dataset` of pairs.
        split (`str`, defaults to "test"): the pairs to score on.
        features / classifier: feature space of map->sat FID/KID (see `load_feature_extractor`).
        max_pairs (`int`, *optional*): score only the first `max_pairs` pairs.
        reference_split (`str`, *optional*): map2sat - as many real satellite tiles of this split (e.g.
            "train"), scored against the real tiles of `split` with the same FID/KID: the floor those
            numbers have at this sample size (`results["reference"]`). Needs `dataset` as a spec or DatasetDict.

    Returns:
        sat2map: {"pixel_acc_8", "pixel_acc_16", "pixel_acc_32", "nonbg_acc_16", "legend_miou",
        "nonbg_legend_acc", "iou_<class>" per legend class but the labels, "rmse"};
        map2sat: {"l1", "rmse", "psnr", "ssim", "fid", "kid_mean"}; each with "baseline" (the same keys
        for the constant-background / blurred-mean baseline) and "info"; map2sat with `reference_split`
        also "reference" ({"fid", "kid_mean"} of real `reference_split` tiles against real `split` tiles).
    """
    direction = direction or generator.direction
    if direction not in ("sat2map", "map2sat"):
        raise ValueError("the generator records no direction: pass direction='sat2map' or 'map2sat'")
    if reference_split is not None and direction == "map2sat" and isinstance(dataset, Dataset):
        raise ValueError("reference_split needs the dataset as a spec or a DatasetDict, not one split")
    splits = dataset if isinstance(dataset, DatasetDict) else None
    if splits is None and not isinstance(dataset, Dataset):
        splits = load_pair_dataset(dataset, split=None)
    if splits is not None:
        for name in (split, reference_split if direction == "map2sat" else None):
            if name is not None and name not in splits:
                raise ValueError(f"no split {name!r}; available: {', '.join(splits)}")
        dataset = splits[split]
    if max_pairs is not None:
        dataset = dataset.select(range(min(max_pairs, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"the {split} split has no pairs")
    wall, cpu = time.perf_counter(), time.process_time()
    source, target = ("satellite", "map") if direction == "sat2map" else ("map", "satellite")
    Scores = MapScores if direction == "sat2map" else SatelliteScores
    model_scores, baseline_scores = Scores(), Scores()
    kept = {"real": [], "model": [], "baseline": []}  # map->sat images, for FID/KID
    generator.eval()
    with torch.inference_mode():
        for inputs, real in tqdm(_pair_batches(dataset, source, target, batch_size), desc=f"{direction} pairs",
                                 total=-(-len(dataset) // batch_size), unit="batch", leave=False):
            predicted = to_uint8(generator(inputs.float().div(127.5).sub(1)))  # eval: a legend model's crisp map
            baseline = constant_map(real) if direction == "sat2map" else blurred_mean_satellite(inputs)
            model_scores.update(predicted, real)
            baseline_scores.update(baseline, real)
            if direction == "map2sat":
                for name, images in (("real", real), ("model", predicted), ("baseline", baseline)):
                    kept[name].append(images)
    results, baseline_results = model_scores.compute(), baseline_scores.compute()
    if direction == "map2sat":
        extractor = load_feature_extractor(features, classifier)
        feats = {name: extract_features(extractor, (b.float().div(127.5).sub(1) for b in batches),
                                        description=f"{name} features")
                 for name, batches in kept.items()}
        for scores, name in ((results, "model"), (baseline_results, "baseline")):
            fk = fid_kid(feats["real"], feats[name], seed=seed)
            scores.update(fid=fk["fid"], kid_mean=fk["kid_mean"])
        if reference_split is not None:
            others = splits[reference_split]
            others = others.select(range(min(len(dataset), len(others))))
            reference = extract_features(extractor, (real.float().div(127.5).sub(1) for _, real in
                                                     _pair_batches(others, "map", "satellite", batch_size)),
                                         description=f"real {reference_split} features")
            fk = fid_kid(feats["real"], reference, seed=seed)
            results["reference"] = {"fid": fk["fid"], "kid_mean": fk["kid_mean"], "split": reference_split,
                                    "num_images": len(others)}
    info = {"split": split, "direction": direction, "num_pairs": len(dataset),
            "baseline": "constant background colour" if direction == "sat2map" else "blurred legend-mean satellite",
            "seconds": round(time.perf_counter() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}
    return {**results, "baseline": baseline_results, "info": info}
