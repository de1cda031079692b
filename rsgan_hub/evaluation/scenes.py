"""Scoring scene generators: FID/KID and precision/recall in a scene-feature space (`features.py`),
sliced Wasserstein distance on pyramid patches (`swd.py`) and, for class-conditional generators, the
classifier's accuracy on generated scenes and the classification accuracy score (Ravuri & Vinyals 2019,
`classify.py`).

Every score is printed next to the same score of real images (the `reference_split`, e.g. train,
against the evaluated split): the floor a perfect generator would reach with this many images.
Real scenes are centre-cropped and resized to the generator's side (`SceneTransform`); generated
scenes are rounded to 8 bits, as a saved PNG would be, so both sides are quantised alike.
"""

from __future__ import annotations

import time

import torch
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from ..data import SceneTransform, load_scene_dataset
from ..models import DCGANGenerator, SceneClassifier
from ..models.hub import find_class
from ..pipelines import latents
from .classify import accuracy, fit_classifier, to_uint8
from .features import (DEFAULT_CLASSIFIER, ClassifierFeatures, extract_features, fid_kid, load_feature_extractor,
                       precision_recall)
from .swd import swd



def scene_tensors(dataset, image_size: int, max_images: int | None = None, seed: int = 0,
                  description: str = "real scenes") -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images (N, 3, S, S) of a scene `datasets.Dataset` (a seeded subsample of `max_images`) and
    their labels (N,) (None when the dataset has no `label` column)."""
    if max_images is not None and len(dataset) > max_images:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
        dataset = dataset.select(sorted(order[:max_images].tolist()))
    transform = SceneTransform(image_size, flip=False)
    images = [to_uint8(transform(example["image"])) for example in tqdm(dataset, desc=description, unit="img",
                                                                         leave=False)]
    if not images:
        raise ValueError(f"{description}: the split has no images")
    labels = torch.tensor(dataset["label"]) if "label" in dataset.column_names else None
    return torch.stack(images), labels


@torch.inference_mode()
def generated_tensors(generator: DCGANGenerator, num_images: int, seed: int = 0, batch_size: int = 64,
                      labels: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images (num_images, 3, S, S); image i from seed `seed + i` (as `generate_images`), of class labels[i]."""
    generator.eval()
    out = []
    for start in tqdm(range(0, num_images, batch_size), desc="generating", unit="batch", leave=False):
        z = latents(range(seed + start, seed + min(start + batch_size, num_images)), generator.latent_dim)
        out.append(to_uint8(generator(z, None if labels is None else labels[start:start + len(z)])))
    return torch.cat(out)


def _as_float(images: torch.Tensor, batch_size: int = 128):
    """Batches of uint8 images as [-1, 1] floats, for the feature extractor."""
    return (images[i:i + batch_size].float().div(127.5).sub(1) for i in range(0, len(images), batch_size))


def _distribution_scores(extractor, real: torch.Tensor, fake: torch.Tensor, real_features: torch.Tensor,
                         seed: int) -> dict[str, float]:
    fake_features = extract_features(extractor, _as_float(fake), len(fake), "features")
    return {**fid_kid(real_features, fake_features, seed=seed), "swd": swd(real, fake, seed=seed)["swd"],
            **precision_recall(real_features, fake_features)}


def _load_split(dataset, split: str | None, label_column: str):
    """A `datasets.Dataset` for `split`: `dataset` itself when it already is one, else loaded from a spec."""
    if isinstance(dataset, Dataset):
        return dataset
    if isinstance(dataset, DatasetDict):
        if split not in dataset:
            raise ValueError(f"no split {split!r}; available: {', '.join(dataset)}")
        return dataset[split]
    return load_scene_dataset(dataset, split=split, label_column=label_column)


def _class_map(generator: DCGANGenerator, names: list[str]) -> torch.Tensor:
    """For each generator class, its index in `names` (case-insensitive), or -1."""
    return torch.tensor([_or_missing(find_class(names, c)) for c in generator.class_names])


def _or_missing(index: int | None) -> int:
    return -1 if index is None else index


def evaluate_scene_generator(
    generator: DCGANGenerator,
    dataset,
    split: str = "test",
    num_images: int = 2000,
    reference_split: str | None = "train",
    features: str = "classifier",
    classifier: str | None = None,
    cas: bool = True,
    cas_epochs: int = 10,
    label_column: str = "label",
    seed: int = 0,
    batch_size: int = 64,
) -> dict:
    """Score a DCGAN generator against the real scenes of `split`.

    Args:
        generator: the model; class-conditional ones also get class accuracy and CAS.
        dataset: a spec for `load_scene_dataset` (Hub id, `rsgan dataset` folder, class tree), a
            DatasetDict, or a single `datasets.Dataset` (then no real-versus-real baseline).
        split (`str`, defaults to "test"): the real images to compare with.
        num_images (`int`, defaults to 2000): generated images (spread evenly over the classes).
        reference_split (`str`, *optional*, defaults to "train"): real images scored against `split`
            as the baseline (at most `num_images` of them); None skips the baseline.
        features: "classifier" (the shipped `SceneClassifier`, or `classifier`) or "inception".
        cas / cas_epochs: train the CAS classifiers (conditional models only) for this many epochs.

    Returns:
        {"fid", "kid_mean", "kid_std", "swd", "precision", "recall"[, "class_accuracy", "cas_accuracy",
        "real_trained_accuracy"], "baseline": same keys for real-versus-real, "info": counts and timings}
    """
    if num_images < 2:
        raise ValueError(f"num_images must be >= 2, got {num_images}")
    wall, cpu = time.perf_counter(), time.process_time()
    extractor = load_feature_extractor(features, classifier)
    test_ds = _load_split(dataset, split, label_column)
    real, real_labels = scene_tensors(test_ds, generator.image_size, description=f"real {split}")
    real_features = extract_features(extractor, _as_float(real), len(real), "features")

    conditional = generator.num_classes > 0
    fake_labels = torch.arange(num_images) % generator.num_classes if conditional else None
    fake = generated_tensors(generator, num_images, seed, batch_size, fake_labels)
    results = _distribution_scores(extractor, real, fake, real_features, seed)
    info = {"split": split, "num_real": len(real), "num_generated": num_images, "features": features}

    baseline, train = {}, None
    if reference_split and not isinstance(dataset, Dataset):
        train_ds = _load_split(dataset, reference_split, label_column)
        train, train_labels = scene_tensors(train_ds, generator.image_size, num_images, seed,
                                            f"real {reference_split}")
        baseline = _distribution_scores(extractor, real, train, real_features, seed)
        info["baseline"] = f"real {reference_split} ({len(train)} images) against real {split}"

    if conditional:
        if real_labels is None:
            raise ValueError(f"the generator is class-conditional but the {split} split has no labels")
        to_generator = _class_map(generator, test_ds.features["label"].names)
        known = to_generator >= 0
        info["classes_not_in_dataset"] = [c for c, k in zip(generator.class_names, known.tolist()) if not k]
        scene_classifier = (extractor.classifier if isinstance(extractor, ClassifierFeatures)
                            else SceneClassifier.from_pretrained(classifier or DEFAULT_CLASSIFIER))
        results["class_accuracy"], baseline_class = _class_accuracy(scene_classifier, generator, fake, fake_labels,
                                                                    real, real_labels, test_ds)
        if baseline:
            baseline["class_accuracy"] = baseline_class
        if cas:
            # real test images of the generator's classes, labelled with generator indices
            dataset_to_generator = {int(d): g for g, d in enumerate(to_generator.tolist()) if d >= 0}
            keep = torch.tensor([int(y) in dataset_to_generator for y in real_labels])
            test_images = real[keep]
            test_labels = torch.tensor([dataset_to_generator[int(y)] for y in real_labels[keep]])
            # the shipped classifier's architecture, fresh weights, the generator's classes
            recipe = {**scene_classifier.init_config, "num_classes": generator.num_classes,
                      "class_names": generator.class_names}
            torch.manual_seed(seed)
            fake_model = fit_classifier(SceneClassifier(**recipe), fake, fake_labels, cas_epochs, seed=seed,
                                        description="CAS classifier on generated scenes")
            results["cas_accuracy"] = accuracy(fake_model, test_images, test_labels)[0]
            if train is not None:
                keep = torch.tensor([int(y) in dataset_to_generator for y in train_labels])
                labels = torch.tensor([dataset_to_generator[int(y)] for y in train_labels[keep]])
                torch.manual_seed(seed)
                real_model = fit_classifier(SceneClassifier(**recipe), train[keep], labels, cas_epochs, seed=seed,
                                            description="CAS classifier on real scenes")
                results["real_trained_accuracy"] = accuracy(real_model, test_images, test_labels)[0]
                baseline["cas_accuracy"] = baseline["real_trained_accuracy"] = results["real_trained_accuracy"]
    info["seconds"] = round(time.perf_counter() - wall, 1)
    info["cpu_seconds"] = round(time.process_time() - cpu, 1)
    return {**results, "baseline": baseline, "info": info}


def _class_accuracy(classifier: SceneClassifier, generator: DCGANGenerator, fake, fake_labels, real, real_labels,
                    test_ds) -> tuple[float, float]:
    """The shipped classifier's accuracy on generated scenes (classes it knows) and on the real ones."""
    to_classifier = _class_map(generator, classifier.class_names)
    targets = to_classifier[fake_labels]
    if (targets < 0).all():
        raise ValueError(f"the classifier knows none of the generator's classes {generator.class_names[:5]}...")
    keep = targets >= 0
    fake_accuracy = accuracy(classifier, fake[keep], targets[keep])[0]
    names = test_ds.features["label"].names
    real_targets = torch.tensor([_or_missing(classifier.class_index(names[int(y)])) for y in real_labels])
    keep = real_targets >= 0
    return fake_accuracy, accuracy(classifier, real[keep], real_targets[keep])[0] if keep.any() else float("nan")
