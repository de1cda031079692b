"""Train the scene classifier whose penultimate features are rsgan_hub's FID/KID/precision-recall
feature space (`rsgan evaluate`), on a scene dataset with a held-out split:

    python train/classifier.py --dataset ../shared/data/aid_train --output_dir pretrained/scene-classifier

A small VGG-style CNN (`SceneClassifier`) at 64 px, trained from scratch in a few CPU minutes: AdamW with a
one-cycle schedule, label smoothing and the eight flips/rotations of the square (aerial scenes have no
"up"). The held-out accuracy (overall and per class) goes into the model card and `eval_results.json`;
the held-out split is the dataset's `--eval_split`, never trained on, so the same split can be used to
test generators without the feature extractor having seen it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rsgan_hub.data import load_scene_dataset
from rsgan_hub.evaluation.classify import accuracy, fit_classifier
from rsgan_hub.evaluation.scenes import scene_tensors
from rsgan_hub.io import atomic_path
from rsgan_hub.models import SceneClassifier
from rsgan_hub.training import flag, parse_config, save_config, training_markdown


@dataclass
class TrainConfig:
    """Train the rsgan_hub scene classifier (the evaluation feature space)."""

    preset: str = flag("default", "recipe whose values become the defaults (only 'default')")
    dataset: str = flag("", "Hub dataset id, `rsgan dataset scenes` folder, or a class-per-folder tree")
    dataset_name: str = flag(None, "how the model card names the data (default: the --dataset value)")
    image_column: str = flag("image", "image column of the dataset")
    label_column: str = flag("label", "class column of the dataset")
    train_split: str = flag("train", "split to train on")
    eval_split: str = flag("test", "held-out split the accuracy is measured on")
    output_dir: str = flag("outputs/scene-classifier", "where the model, its card and eval_results.json go")
    seed: int = flag(0, "seed of the initialisation, shuffling and augmentation")
    image_size: int = flag(64, "side the scenes are resized to")
    channels: list = flag([32, 64, 128, 256], "width per stage (the last is the feature dimension)")
    convs_per_stage: int = flag(1, "3x3 convolutions per stage after the stem")
    dropout: float = flag(0.3, "dropout before the linear head")
    epochs: int = flag(8, "passes over the training split")
    batch_size: int = flag(64, "images per step")
    learning_rate: float = flag(3e-3, "peak AdamW learning rate (one-cycle schedule)")
    weight_decay: float = flag(5e-4, "AdamW weight decay")
    threads: int = flag(None, "torch CPU threads (none: torch's default)")


def main(config: TrainConfig) -> None:
    if not config.dataset:
        raise SystemExit("--dataset is required")
    if config.threads:
        torch.set_num_threads(config.threads)
    output_dir = Path(config.output_dir)
    save_config(config, output_dir)
    torch.manual_seed(config.seed)

    # Data: decoded once at image_size into uint8 tensors (7,000 AID scenes at 64 px: 86 MB).
    train_ds = load_scene_dataset(config.dataset, config.train_split, config.image_column, config.label_column)
    eval_ds = load_scene_dataset(config.dataset, config.eval_split, config.image_column, config.label_column)
    class_names = train_ds.features["label"].names
    train_images, train_labels = scene_tensors(train_ds, config.image_size, description=config.train_split)
    eval_images, eval_labels = scene_tensors(eval_ds, config.image_size, description=config.eval_split)
    print(f"{len(train_images)} {config.train_split} / {len(eval_images)} {config.eval_split} scenes, "
          f"{len(class_names)} classes")

    # Model and training.
    model = SceneClassifier(image_size=config.image_size, channels=config.channels,
                            convs_per_stage=config.convs_per_stage, num_classes=len(class_names),
                            class_names=class_names, dropout=config.dropout)
    start = time.time()
    fit_classifier(model, train_images, train_labels, config.epochs, config.batch_size, config.learning_rate,
                   config.weight_decay, config.seed, description="scene classifier")
    seconds = time.time() - start

    # Held-out accuracy -> eval_results.json and the model card.
    overall, per_class = accuracy(model, eval_images, eval_labels)
    train_accuracy = accuracy(model, train_images, train_labels)[0]
    results = {"accuracy": overall, "train_accuracy": train_accuracy,
               "per_class_accuracy": dict(zip(class_names, per_class.tolist())),
               "num_train": len(train_images), "num_eval": len(eval_images), "train_seconds": round(seconds, 1)}
    print(f"held-out accuracy {overall:.4f} ({config.eval_split}, {len(eval_images)} scenes); "
          f"train accuracy {train_accuracy:.4f}; {seconds / 60:.1f} min")
    steps = config.epochs * -(-len(train_images) // config.batch_size)
    rows = "\n".join(f"| {name} | {acc:.3f} |" for name, acc in sorted(results["per_class_accuracy"].items(),
                                                                         key=lambda kv: kv[1]))
    training = (training_markdown(config, steps, steps * config.batch_size, steps, seconds, "CPU")
                + f"\n\nHeld-out ({config.eval_split}) accuracy per class, worst first:\n\n"
                  f"| class | accuracy |\n|---|---|\n{rows}")
    model.save_pretrained(output_dir, model_card_kwargs={
        "training": training, "metrics": {"accuracy": overall}, "dataset": config.dataset_name or config.dataset,
        "dataset_split": config.eval_split})
    with atomic_path(output_dir / "eval_results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    print(f"saved the classifier to {output_dir}")


if __name__ == "__main__":
    main(parse_config(TrainConfig, {"default": {}}))
