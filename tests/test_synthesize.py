"""`rsgan synthesize`: a labelled, reproducible `datasets` dataset of generated scenes with a card."""

import numpy as np
import pytest
import yaml
from datasets import ClassLabel, Dataset, Features, Image, Value, concatenate_datasets, load_from_disk
from PIL import Image as PILImage

from conftest import tiny_dcgan
from rsgan_hub import DCGANGenerator, generate_images
from rsgan_hub.cli import main

CLASSES = ["Forest", "River", "Desert"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_dcgan(64, num_classes=3, class_names=CLASSES)[0].save_pretrained(folder / "conditional")
    tiny_dcgan(64)[0].save_pretrained(folder / "unconditional")
    return folder


def synthesize(model, out, *args):
    return main(["synthesize", "--model", str(model), "--out", str(out), *map(str, args)])


def test_dataset_columns_seeds_and_card(model_dir, tmp_path):
    assert synthesize(model_dir / "conditional", tmp_path / "syn", "--per-class", 3, "--seed", 10,
                      "--batch-size", 2) == 0
    train = load_from_disk(str(tmp_path / "syn"))["train"]
    assert train.features["label"] == ClassLabel(names=CLASSES)
    assert train.features["seed"] == Value("int64") and train.features["synthetic"] == Value("bool")
    assert len(train) == 9 and all(train["synthetic"])
    # seed S + i * K + c: unique, and each row regenerates alone with generate_images
    assert list(train["seed"]) == [10 + i * 3 + c for c in range(3) for i in range(3)]
    generator = DCGANGenerator.from_pretrained(model_dir / "conditional")
    for row in (train[0], train[5], train[8]):
        again = generate_images(generator, 1, seed=row["seed"], label=row["label"])[0]
        assert np.abs(np.asarray(row["image"], int) - np.asarray(again, int)).max() <= 1
    assert row["image"].size == (64, 64)
    card = (tmp_path / "syn" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert "synthetic" in meta["tags"] and meta["task_categories"] == ["image-classification"]
    assert str(model_dir / "conditional") in card and "`10 + i * 3 + c`" in card
    assert "--per-class 3 --seed 10" in card


def test_reproducible_and_consistent_subsets(model_dir, tmp_path):
    synthesize(model_dir / "conditional", tmp_path / "a", "--per-class", 2, "--seed", 4)
    synthesize(model_dir / "conditional", tmp_path / "b", "--per-class", 3, "--seed", 4, "--classes", "desert,River")
    a, b = load_from_disk(str(tmp_path / "a"))["train"], load_from_disk(str(tmp_path / "b"))["train"]
    assert sorted(set(b["label"])) == [1, 2]
    rows_a = {s: np.asarray(im) for s, im in zip(a["seed"], a["image"])}
    shared = [(s, np.asarray(im)) for s, im in zip(b["seed"], b["image"]) if s in rows_a]
    assert len(shared) == 4  # first 2 images of River and Desert: same seeds, same pixels
    assert all(np.array_equal(rows_a[s], im) for s, im in shared)


def test_mixes_into_a_real_training_set(model_dir, tmp_path):
    synthesize(model_dir / "conditional", tmp_path / "syn", "--per-class", 2)
    synthetic = load_from_disk(str(tmp_path / "syn"))["train"]
    images = [PILImage.new("RGB", (64, 64), c) for c in ("green", "blue")]
    real = Dataset.from_dict({"image": images, "label": [0, 1]},
                             features=Features({"image": Image(), "label": ClassLabel(names=CLASSES)}))
    real = real.add_column("seed", [-1] * len(real)).add_column("synthetic", [False] * len(real))
    mixed = concatenate_datasets([real.cast(synthetic.features), synthetic])
    assert len(mixed) == 8 and sum(mixed["synthetic"]) == 6


@pytest.mark.parametrize("model, args, message", [
    ("unconditional", ["--per-class", 2], "is unconditional: a labelled dataset needs a class-conditional model"),
    ("conditional", ["--per-class", 2, "--classes", "Forest,Ocean"], "unknown class 'Ocean'; known classes: Forest"),
    ("conditional", ["--per-class", 0], "--per-class must be > 0"),
    ("conditional", ["--per-class", 2, "--truncation", "-1"], "--truncation must be at least 0.05 (or off), got -1.0"),
])
def test_errors(model_dir, tmp_path, capsys, model, args, message):
    assert synthesize(model_dir / model, tmp_path / "out", *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("rsgan: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_push_failure_is_one_line_and_keeps_the_local_copy(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert synthesize(model_dir / "conditional", tmp_path / "syn", "--per-class", 1,
                      "--push-to-hub", "user/rs-synthetic") == 1
    err = capsys.readouterr().err
    assert err.startswith("rsgan: error: push to user/rs-synthetic failed (the local dataset is complete)")
    assert len(err.strip().splitlines()) == 1
    assert len(load_from_disk(str(tmp_path / "syn"))["train"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no cache folder left behind
