"""rsgan_hub.data: cleaning, conversion, the one loader and the transforms, on synthetic images and rasters
(the real data has no licence: every image here is made by the helpers below)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def noise(rng, h, w, tint=(0, 0, 0)) -> Image.Image:
    """A random RGB image, tinted so that classes differ."""
    array = rng.integers(0, 200, (h, w, 3)) + np.array(tint)
    return Image.fromarray(array.clip(0, 255).astype(np.uint8))


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def stretched_2_98(band: np.ndarray) -> np.ndarray:
    """The documented 16-bit rule, written out independently: 2nd percentile -> 0, 98th -> 255."""
    low, high = np.percentile(band, [2, 98])
    return np.clip(np.round((band.astype(np.float64) - low) * 255 / (high - low)), 0, 255).astype(np.uint8)


def make_rsicb_tree(root: Path, seed: int = 0) -> dict:
    """`category/class/*.tif` like RSI-CB, with every kind of bad and convertible file.

    Returns {relative path: expected 8-bit RGB array} for the files that must be kept.
    """
    rng = np.random.default_rng(seed)
    kept = {}

    def put(rel, data, expected=None):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if expected is not None:
            kept[rel] = np.asarray(expected)

    for i in range(4):
        img = noise(rng, 24, 24, (40, 0, 0))
        put(f"transportation/airport_runway/runway({i}).tif", encoded(img, "TIFF"), img)
    for i in range(3):
        img = noise(rng, 24, 24, (0, 40, 0))
        put(f"transportation/avenue/avenue({i}).tif", encoded(img, "TIFF"), img)
    cmyk = noise(rng, 24, 24).convert("CMYK")
    put("transportation/avenue/avenue_cmyk.tif", encoded(cmyk, "TIFF"), cmyk.convert("RGB"))
    grey16 = rng.integers(0, 65536, (24, 24)).astype(np.uint16)
    put("transportation/avenue/avenue_16bit.tif", encoded(Image.fromarray(grey16), "TIFF"),
        np.repeat(stretched_2_98(grey16)[:, :, None], 3, axis=2))
    for i in range(3):
        img = noise(rng, 24, 24, (0, 0, 40))
        put(f"vegetation/forest/forest({i}).tif", encoded(img, "TIFF"), img)
    palette = noise(rng, 24, 24).convert("P")
    put("vegetation/forest/forest_palette.tif", encoded(palette, "TIFF"), palette.convert("RGB"))
    opaque = noise(rng, 24, 24).convert("RGBA")
    put("vegetation/forest/forest_rgba.png", encoded(opaque, "PNG"), opaque.convert("RGB"))
    good = encoded(noise(rng, 24, 24), "TIFF")
    put("vegetation/forest/forest_corrupt.tif", good[: len(good) // 2])  # truncated
    for i in range(2):
        img = noise(rng, 24, 24, (40, 40, 0))
        put(f"water/lake/lake({i}).tif", encoded(img, "TIFF"), img)
    transparent = np.asarray(noise(rng, 24, 24).convert("RGBA")).copy()
    transparent[:4, :4, 3] = 0
    put("water/lake/lake_nodata.png", encoded(Image.fromarray(transparent), "PNG"))
    put("water/lake/notes.txt", b"downloaded from somewhere\n")  # a non-image file among the images
    put("README.txt", b"RSI-CB-like test tree\n")  # outside the class folders
    return kept


def make_flat_tree(root: Path, classes=("Forest", "River", "Desert"), per_class=10, seed=0) -> None:
    """`class/*.jpg|png` like AID / UC Merced."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            fmt = "JPEG" if i % 2 else "PNG"
            (root / name / f"{name.lower()}_{i}.{fmt.lower().replace('jpeg', 'jpg')}").write_bytes(
                encoded(noise(rng, 20, 20, (30 * c, 0, 0)), fmt))


def make_side_by_side(root: Path, rows=4, cols=3, size=32, seed=0) -> None:
    """`data_RR_CC.png` satellite|map pairs (PNG so pixels can be compared exactly) and bad ones."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            pair = Image.new("RGB", (2 * size, size))
            pair.paste(noise(rng, size, size), (0, 0))
            pair.paste(Image.new("RGB", (size, size), (200, 200, 10 * r + c)), (size, 0))
            pair.save(root / f"data_{r:02d}_{c:02d}.png")
    noise(rng, size, 2 * size + 1).save(root / "data_09_01.png")  # odd width: halves differ in size
    (root / "data_09_02.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


def make_rasters(root: Path, width=200, height=136, seed=0, sat_name="city_sat.png", map_name="city_map.png"):
    """Two co-registered rasters; the top-left 32² corner of the satellite image is blank (no data)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    satellite = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    satellite[:32, :32] = 0
    map_image = (satellite // 64 * 64).astype(np.uint8)  # a "map": posterised satellite, same geometry
    Image.fromarray(satellite).save(root / sat_name)
    Image.fromarray(map_image).save(root / map_name)
    return satellite, map_image


def put_dataset_in_hf_cache(folder: Path, datasets_cache: Path, repo_id: str) -> None:
    """Leave `folder` (README.md + data/*.parquet, a Hub dataset repo) in HF_DATASETS_CACHE the way
    `load_dataset(repo_id)` leaves a downloaded Hub dataset, so that it loads offline by its id."""
    from datasets import load_dataset

    name = repo_id.split("/")[-1]
    staged = datasets_cache.parent / "staged" / name  # Arrow files are named after the dataset
    shutil.copytree(folder, staged, ignore=shutil.ignore_patterns("train", "test", "*.json"))
    load_dataset(str(staged), cache_dir=str(datasets_cache.parent / "prepared"))
    (prepared,) = [p for p in (datasets_cache.parent / "prepared").glob(f"{name}/default/*/*") if p.is_dir()]
    shutil.copytree(prepared, datasets_cache / repo_id.replace("/", "___") / "default" / prepared.parent.name
                    / prepared.name)


# ------------------------------------------------------------------------------------------------ tests
import hashlib  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset, DatasetDict, load_from_disk  # noqa: E402
from datasets import Image as ImageFeature  # noqa: E402

from rsgan_hub.data import (PairedTransform, SceneTransform, build_pair_dataset, build_scene_dataset,  # noqa: E402
                            load_pair_dataset, load_scene_dataset, split_stratified)
from rsgan_hub.io import pil_to_tensor  # noqa: E402


def raw_bytes(ds, column="image"):
    return [v["bytes"] for v in ds.cast_column(column, ImageFeature(decode=False))[column]]


def test_two_level_tree_converts_and_skips_by_reason(tmp_path):
    kept = make_rsicb_tree(tmp_path / "src")
    dsdict, skipped = build_scene_dataset(tmp_path / "src", test_fraction=0.25, seed=0, cache_dir=tmp_path / "c")
    assert {k: sorted(v) for k, v in skipped.items()} == {
        "truncated or corrupt": ["vegetation/forest/forest_corrupt.tif"],
        "not an image": ["water/lake/notes.txt"],
        "transparent pixels": ["water/lake/lake_nodata.png"],
        "not in a class folder": ["README.txt"]}
    train = dsdict["train"]
    assert train.features["label"].names == ["airport_runway", "avenue", "forest", "lake"]
    assert train.features["category"].names == ["transportation", "vegetation", "water"]
    assert sum(len(d) for d in dsdict.values()) == len(kept) == 16
    # every kept file became exactly the expected 8-bit RGB pixels (CMYK, 16-bit, palette, RGBA converted)
    expected = {hashlib.sha1(a.tobytes()).hexdigest(): a for a in kept.values()}
    for split in dsdict.values():
        for example in split:
            array = np.asarray(example["image"])
            assert example["image"].mode == "RGB" and array.dtype == np.uint8
            assert hashlib.sha1(array.tobytes()).hexdigest() in expected
            category = split.features["category"].int2str(example["category"])
            assert category == {"airport_runway": "transportation", "avenue": "transportation",
                                "forest": "vegetation", "lake": "water"}[split.features["label"].int2str(example["label"])]


def test_flat_tree_split_is_stratified_and_seeded(tmp_path):
    make_flat_tree(tmp_path / "src")
    a, skipped = build_scene_dataset(tmp_path / "src", test_fraction=0.2, seed=1, cache_dir=tmp_path / "a")
    b, _ = build_scene_dataset(tmp_path / "src", test_fraction=0.2, seed=1, cache_dir=tmp_path / "b")
    c, _ = build_scene_dataset(tmp_path / "src", test_fraction=0.2, seed=2, cache_dir=tmp_path / "c")
    assert skipped == {} and "category" not in a["train"].features
    assert a["train"].features["label"].names == ["Desert", "Forest", "River"]
    assert sorted(a["test"]["label"]) == [0, 0, 1, 1, 2, 2] and len(a["train"]) == 24
    assert raw_bytes(a["test"]) == raw_bytes(b["test"])  # same seed, same split
    assert set(raw_bytes(a["test"])) != set(raw_bytes(c["test"]))  # another seed, another split
    workers, _ = build_scene_dataset(tmp_path / "src", test_fraction=0.2, seed=1, num_proc=2, cache_dir=tmp_path / "w")
    assert raw_bytes(workers["test"]) == raw_bytes(a["test"])  # num_proc shards keep the order
    # 8-bit RGB JPEG/PNG files are stored as they are, not re-encoded
    files = {p.read_bytes() for p in (tmp_path / "src").rglob("*.*")}
    assert set(raw_bytes(a["train"]) + raw_bytes(a["test"])) == files


def test_same_class_name_in_two_categories_stays_apart(tmp_path):
    rng = np.random.default_rng(0)
    for category in ("urban", "rural"):
        (tmp_path / "src" / category / "road").mkdir(parents=True)
        for i in range(2):
            noise(rng, 8, 8).save(tmp_path / "src" / category / "road" / f"{i}.png")
    dsdict, _ = build_scene_dataset(tmp_path / "src", test_fraction=0, cache_dir=tmp_path / "c")
    assert dsdict["train"].features["label"].names == ["rural/road", "urban/road"]
    assert list(dsdict) == ["train"]


def test_split_stratified_edges():
    assert split_stratified(["a"] * 5 + ["b"], 0.0, 0) == ["train"] * 6
    splits = split_stratified(["a"] * 5 + ["b"], 0.1, 0)
    assert splits.count("test") == 1 and splits[5] == "train"  # a 1-image class stays in train
    with pytest.raises(ValueError, match="--test-fraction must be in"):
        split_stratified(["a"], 1.0, 0)


def test_side_by_side_pairs(tmp_path):
    make_side_by_side(tmp_path / "src")
    dsdict, skipped = build_pair_dataset(tmp_path / "src", test_rows="3:5", cache_dir=tmp_path / "c")
    assert skipped == {"odd width 65 (halves differ in size)": ["data_09_01.png"], "truncated or corrupt": ["data_09_02.jpg"]}
    assert (len(dsdict["train"]), len(dsdict["test"])) == (6, 6)
    assert set(dsdict["test"]["row"]) == {3, 4} and set(dsdict["train"]["row"]) == {1, 2}
    example = dsdict["train"][0]
    original = Image.open(tmp_path / "src" / f"data_{example['row']:02d}_{example['col']:02d}.png")
    assert np.array_equal(np.asarray(example["satellite"]), np.asarray(original.crop((0, 0, 32, 32))))
    assert np.array_equal(np.asarray(example["map"]), np.asarray(original.crop((32, 0, 64, 32))))
    swapped, _ = build_pair_dataset(tmp_path / "src", satellite_side="right", cache_dir=tmp_path / "d")
    assert list(swapped) == ["train"] and len(swapped["train"]) == 12
    assert np.array_equal(np.asarray(swapped["train"][0]["satellite"]), np.asarray(dsdict["train"][0]["map"]))
    # the pix2pix layout: train/ and val/ folders become splits of their own
    make_side_by_side(tmp_path / "p2p" / "train", rows=2, cols=2)
    make_side_by_side(tmp_path / "p2p" / "val", rows=1, cols=2, seed=1)
    folders, skipped = build_pair_dataset(tmp_path / "p2p", cache_dir=tmp_path / "e")
    assert {s: len(d) for s, d in folders.items()} == {"train": 4, "val": 2} and len(skipped) == 2
    with pytest.raises(ValueError, match="already has split folders \\(train, val\\); drop --test-rows"):
        build_pair_dataset(tmp_path / "p2p", test_rows="1:2")


def test_rasters_spatial_split_has_no_overlap(tmp_path):
    satellite, map_image = make_rasters(tmp_path / "src")
    dsdict, skipped = build_pair_dataset(tmp_path / "src", layout="two-rasters", tile=32, test_rows="1:3",
                                         cache_dir=tmp_path / "c")
    assert skipped == {"blank satellite tile (no data)": ["tile row 0 col 0"]}
    train, test = dsdict["train"], dsdict["test"]
    assert (len(train), len(test)) == (4 * 6 - 2 * 6 - 1, 2 * 6)  # 136//32 rows, 200//32 cols, one blank
    assert set(test["row"]) == {1, 2} and set(train["row"]) == {0, 3}

    def box(row, col):
        return row * 32, col * 32, row * 32 + 32, col * 32 + 32

    train_boxes = [box(r, c) for r, c in zip(train["row"], train["col"])]
    for r, c in zip(test["row"], test["col"]):
        t = box(r, c)
        assert not any(t[0] < b[2] and b[0] < t[2] and t[1] < b[3] and b[1] < t[3] for b in train_boxes)
    for example in (train[0], test[-1]):  # each tile holds the pixels of its place in both rasters
        y, x = example["row"] * 32, example["col"] * 32
        assert np.array_equal(np.asarray(example["satellite"]), satellite[y:y + 32, x:x + 32])
        assert np.array_equal(np.asarray(example["map"]), map_image[y:y + 32, x:x + 32])


def test_rasters_bad_input(tmp_path):
    make_rasters(tmp_path / "a")
    Image.new("RGB", (100, 136)).save(tmp_path / "a" / "city_map.png")
    with pytest.raises(ValueError, match="city_sat.png is 200x136 but city_map.png is 100x136; .*co-registered"):
        build_pair_dataset(tmp_path / "a", layout="two-rasters", tile=32)
    make_rasters(tmp_path / "b", map_name="other.png")
    with pytest.raises(ValueError, match="one file named \\*sat\\* and one named \\*map\\*"):
        build_pair_dataset(tmp_path / "b", layout="two-rasters", tile=32)
    make_rasters(tmp_path / "c")
    with pytest.raises(ValueError, match="outside the 4 tile rows"):
        build_pair_dataset(tmp_path / "c", layout="two-rasters", tile=32, test_rows="3:5")
    with pytest.raises(ValueError, match="--test-rows must be A:B"):
        build_pair_dataset(tmp_path / "c", layout="two-rasters", tile=32, test_rows="5:3")


def test_loader_accepts_raw_saved_and_hub_forms(tmp_path):
    make_flat_tree(tmp_path / "raw")
    raw = load_scene_dataset(tmp_path / "raw", split=None, cache_dir=tmp_path / "cache")
    # the command's defaults (10 % test, seed 0); the same cache: converted once, reused
    dsdict, _ = build_scene_dataset(tmp_path / "raw", cache_dir=tmp_path / "cache")
    assert dsdict["test"].cache_files == raw["test"].cache_files
    dsdict.save_to_disk(tmp_path / "saved")
    saved = load_scene_dataset(tmp_path / "saved", split=None)
    assert raw_bytes(raw["test"]) == raw_bytes(saved["test"]) and len(raw["train"]) == len(saved["train"]) == 27
    assert raw["train"].features == saved["train"].features
    # a Hub dataset repo (README + parquet) with its own column names, loaded offline by its id
    repo = tmp_path / "repo"
    for split, ds in dsdict.items():
        ds.rename_columns({"image": "img", "label": "scene"}).to_parquet(repo / "data" / f"{split}-00000-of-00001.parquet")
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                    "    path: data/train-*\n  - split: test\n    path: data/test-*\n---\n")
    put_dataset_in_hf_cache(repo, tmp_path / "hf_datasets", "someone/scenes")
    code = ("from rsgan_hub.data import load_scene_dataset as f; d = f('someone/scenes', 'test', image_column='img', "
            "label_column='scene'); print(len(d), d.features['label'].names, d[0]['image'].size)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3 ['Desert', 'Forest', 'River'] (20, 20)"
    code = "from rsgan_hub.data import load_scene_dataset as f; f('someone/missing')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "ValueError: someone/missing: no such folder, and loading it as a Hub dataset failed" in out.stderr


def test_loader_errors_and_column_mapping(tmp_path):
    make_flat_tree(tmp_path / "raw", per_class=3)
    with pytest.raises(ValueError, match="no split 'validation'; available: train, test"):
        load_scene_dataset(tmp_path / "raw", split="validation", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="no column 'pixels' \\(for 'image'\\); columns: image, label"):
        load_scene_dataset(tmp_path / "raw", image_column="pixels", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="nowhere/at/all: no such folder"):
        load_scene_dataset("nowhere/at/all")
    # a pix2pix-style dataset with imageA/imageB columns and a string label column
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    Dataset.from_dict({"imageA": [image] * 2, "imageB": [image] * 2, "name": ["a", "b"]},
                      features=None).cast_column("imageA", ImageFeature()).cast_column(
        "imageB", ImageFeature()).save_to_disk(tmp_path / "ab")
    pairs = load_pair_dataset(tmp_path / "ab", satellite_column="imageA", map_column="imageB")
    assert pairs.column_names == ["satellite", "map"] and pairs[1]["map"].size == (8, 8)
    DatasetDict({"train": Dataset.from_dict({"image": [image] * 2, "label": ["x", "y"]}).cast_column(
        "image", ImageFeature())}).save_to_disk(tmp_path / "strings")
    assert load_scene_dataset(tmp_path / "strings").features["label"].names == ["x", "y"]


def test_scene_transform(tmp_path):
    image = noise(np.random.default_rng(0), 30, 40)  # not square: centre-cropped to 30x30
    fixed = SceneTransform(image_size=16, flip=False)(image)
    assert fixed.shape == (3, 16, 16) and fixed.min() >= -1 and fixed.max() <= 1
    centre = image.crop((5, 0, 35, 30)).resize((16, 16), Image.Resampling.BOX)
    assert torch.equal(fixed, pil_to_tensor(centre))
    flips = [SceneTransform(16, generator=7)(image) for _ in range(2)]
    assert torch.equal(flips[0], flips[1])  # same seed, same flip
    draws = SceneTransform(16, generator=0)
    outcomes = {torch.equal(draws(image), fixed) for _ in range(20)}
    assert outcomes == {True, False}  # flipped sometimes, not always
    assert torch.equal(SceneTransform(64, flip=False)(image.crop((0, 0, 30, 30))),
                       pil_to_tensor(image.crop((0, 0, 30, 30)).resize((64, 64), Image.Resampling.BICUBIC)))


def test_scene_transform_dihedral_draws_all_eight_symmetries():
    """An asymmetric image comes out as each of the 8 symmetries of the square, and as nothing else."""
    image = Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3))
    base = SceneTransform(8, flip=False)(image)
    symmetries = [torch.rot90(t, k, dims=(-2, -1)) for t in (base, base.flip(-1)) for k in range(4)]
    transform = SceneTransform(8, flip=False, dihedral=True, generator=0)
    seen = set()
    for _ in range(200):
        out = transform(image)
        matches = [i for i, s in enumerate(symmetries) if torch.equal(out, s)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))


def test_paired_transform_dihedral_gives_both_images_the_same_symmetry():
    """A satellite image and a different map: each comes out as one of its 8 symmetries, always the
    same one for both, and all 8 are drawn."""
    satellite = Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3))
    map_image = Image.fromarray((255 - np.arange(8 * 8 * 3) % 200).astype(np.uint8).reshape(8, 8, 3))
    bases = PairedTransform(8, 8, flip=False)(satellite, map_image)
    symmetries = [[torch.rot90(t, k, dims=(-2, -1)) for t in (b, b.flip(-1)) for k in range(4)] for b in bases]
    transform = PairedTransform(8, 8, flip=False, dihedral=True, generator=0)
    seen = set()
    for _ in range(200):
        out = transform(satellite, map_image)
        matches = [[i for i, s in enumerate(sym) if torch.equal(o, s)] for o, sym in zip(out, symmetries)]
        assert len(matches[0]) == 1 and matches[0] == matches[1]
        seen.add(matches[0][0])
    assert seen == set(range(8))


def test_paired_transform_same_geometry_and_dataloader(tmp_path):
    rng = np.random.default_rng(0)
    satellite = noise(rng, 40, 40)
    transform = PairedTransform(load_size=48, crop_size=32, generator=3)
    crops = set()
    for _ in range(10):  # identical inputs stay identical: the same crop and flip on both
        s, m = transform(satellite, satellite.copy())
        assert s.shape == m.shape == (3, 32, 32) and torch.equal(s, m)
        crops.add(hashlib.sha1(s.numpy().tobytes()).hexdigest())
    assert len(crops) > 3  # and the crops really are random
    a = PairedTransform(48, 32, generator=5)(satellite, satellite)
    assert torch.equal(a[0], PairedTransform(48, 32, generator=5)(satellite, satellite)[0])
    whole = PairedTransform(40, 40, flip=False)(satellite, satellite)
    assert torch.equal(whole[0], pil_to_tensor(satellite))
    with pytest.raises(ValueError, match="crop_size 64 is larger than load_size 32"):
        PairedTransform(32, 64)
    make_side_by_side(tmp_path / "src", rows=2, cols=2)
    pairs = load_pair_dataset(tmp_path / "src", cache_dir=tmp_path / "c")
    assert load_pair_dataset(tmp_path / "src", "test", test_rows="2:3", cache_dir=tmp_path / "c")["row"] == [2, 2]
    loader = torch.utils.data.DataLoader(pairs.with_transform(PairedTransform(36, 32)), batch_size=4)
    batch = next(iter(loader))
    assert batch["satellite"].shape == batch["map"].shape == (4, 3, 32, 32)
    assert sorted(batch["row"].tolist()) == [1, 1, 2, 2]
    scenes = load_from_disk(str(_saved_scenes(tmp_path)))["train"].with_transform(SceneTransform(16))
    batch = next(iter(torch.utils.data.DataLoader(scenes, batch_size=5)))
    assert batch["image"].shape == (5, 3, 16, 16) and batch["label"].shape == (5,)


def _saved_scenes(tmp_path):
    make_flat_tree(tmp_path / "flat", per_class=4)
    dsdict, _ = build_scene_dataset(tmp_path / "flat", cache_dir=tmp_path / "c2")
    dsdict.save_to_disk(tmp_path / "flat_saved")
    return tmp_path / "flat_saved"
