"""Raw folders -> `datasets.DatasetDict`: class trees of scenes, and satellite/map pairs.

Scenes: the class-per-folder layouts of RSI-CB (Li et al. 2017; `category/class/*.tif`), AID (Xia et
al. 2017) and UC Merced (Yang & Newsam 2010; `class/*.jpg`), split into train/test per class with a
seeded shuffle. Pairs (pix2pix, Isola et al. 2017): side-by-side satellite|map images, or two
co-registered rasters cut into tiles with a band of tile rows held out for testing. Every input
becomes one example of a `Dataset.from_generator` shard (spread over `num_proc` workers, streamed to
Arrow, never all in memory); inputs that cannot be used carry a `_skip` reason, which is counted
and filtered out at the end.
"""

from __future__ import annotations

import hashlib
import os
import re
import contextlib
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from ..geo import open_scene
from .clean import IMAGE_SUFFIXES, _read, clean_image, encode_rgb

CONVERTER_VERSION = "2"  # part of the on-the-fly cache key: bump when the conversion changes its output
GRID_NAME = re.compile(r"_(\d+)_(\d+)$")  # "data_04_13.jpg" -> tile row 4, col 13 (the Mumbai tiles)


def scan_scene_tree(src: str | os.PathLike) -> tuple[list[tuple[str, str, str | None]], list[str]]:
    """List a class tree -> ([(path, class, category or None)], [paths outside the class folders]).

    The depth of the class folders (0: no labels, 1: `class/x`, 2: `category/class/x`) is the most
    common depth of image files; hidden files and folders are ignored.
    """
    root = Path(src)
    if not root.is_dir():
        raise ValueError(f"{src}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    depths = Counter(len(p.relative_to(root).parts) - 1 for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if not depths:
        raise ValueError(f"{src}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    depth = depths.most_common(1)[0][0]
    if depth > 2:
        raise ValueError(f"{src}: images are {depth} folders deep; expected class/* or category/class/*")
    items, outside = [], []
    for p in files:
        parts = p.relative_to(root).parts[:-1]
        if len(parts) != depth:
            outside.append(str(p))
        else:
            items.append((str(p), parts[-1] if depth else None, parts[0] if depth == 2 else None))
    homes = defaultdict(set)
    for _, c, g in items:
        homes[c].add(g)
    if any(len(g) > 1 for g in homes.values()):  # one class name in two categories: keep them apart
        items = [(p, f"{g}/{c}", g) for p, c, g in items]
    return items, outside


def split_stratified(labels: list, test_fraction: float, seed: int) -> list[str]:
    """'train'/'test' per item: `test_fraction` of each class (at least one of any class of >= 2
    items when the fraction is > 0), chosen by a seeded shuffle - the same seed, the same split."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    by_class = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    splits = ["train"] * len(labels)
    for label in sorted(by_class, key=str):
        members = by_class[label]
        n_test = 0 if test_fraction == 0 or len(members) < 2 else max(1, round(len(members) * test_fraction))
        for i in rng.permutation(members)[:n_test]:
            splits[i] = "test"
    return splits


def _scene_examples(items: list[tuple[str, int, int]], root: str) -> Iterator[dict]:
    """Generator for `Dataset.from_generator`: one example per file; skipped ones carry `_skip`.
    A label or category of -1 means the tree has no such level: the column is left out."""
    for path, label, category in items:
        data = _read(path)
        image = clean_image(data) if isinstance(data, bytes) else data
        skip = skipped_as(image, os.path.relpath(path, root)) if isinstance(image, str) else None
        example = {"image": None if skip else encode_rgb(image, data), "_skip": skip}
        example.update({k: v for k, v in (("label", label), ("category", category)) if v >= 0})
        yield example


def build_scene_dataset(src: str | os.PathLike, test_fraction: float = 0.1, seed: int = 0,
                        num_proc: int | None = None, cache_dir: str | None = None):
    """Convert a raw class tree -> (DatasetDict of train/test, {reason: [skipped files]}).

    Columns: `image` (Image), `label` (ClassLabel) when the tree has class folders, `category`
    (ClassLabel) when it has two levels. The split is drawn after bad files are skipped, so each
    class's test share is exact. `cache_dir=None` caches the Arrow files in the HF datasets cache
    under a key of the file listing, so converting the same tree again (any split) is instant.
    """
    split_stratified([], test_fraction, seed)  # check the arguments before the long part
    items, outside = scan_scene_tree(src)
    classes = sorted({c for _, c, _ in items if c is not None})
    categories = sorted({g for _, _, g in items if g is not None})
    class_of = {name: i for i, name in enumerate(classes)}
    category_of = {name: i for i, name in enumerate(categories)}
    features = {"image": ImageFeature()}
    if classes:
        features["label"] = ClassLabel(names=classes)
    if categories:
        features["category"] = ClassLabel(names=categories)
    rows = [(p, class_of.get(c, -1), category_of.get(g, -1)) for p, c, g in items]
    outside = {"not in a class folder": [os.path.relpath(p, src) for p in outside]} if outside else {}
    converted, skipped = _generate(_scene_examples, {"scenes": rows}, features, _listing_key(src, "scenes"), num_proc,
                                   cache_dir, skipped=outside, root=str(src))
    everything = converted["scenes"]
    splits = split_stratified(everything["label"] if classes else [0] * len(everything), test_fraction, seed)
    return DatasetDict({s: everything.select([i for i, x in enumerate(splits) if x == s])
                        for s in ("train", "test") if s in splits}), skipped


# ---------------------------------------------------------------------------------------------------
# Paired datasets: side-by-side JPEGs, or two co-registered rasters cut into tiles
# ---------------------------------------------------------------------------------------------------

def parse_rows(text: str | None) -> tuple[int, int] | None:
    """'A:B' -> (A, B): tile rows A <= row < B form the test band."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(text))
    if not match or int(match[1]) >= int(match[2]):
        raise ValueError(f"--test-rows must be A:B with A < B (tile rows A..B-1), got {text!r}")
    return int(match[1]), int(match[2])


def _side_by_side_examples(files: list[str], splits_root: str, satellite_side: str) -> Iterator[dict]:
    for path in files:
        name = os.path.relpath(path, splits_root)
        data = _read(path)
        image = clean_image(data) if isinstance(data, bytes) else data
        if not isinstance(image, str) and image.width % 2:
            image = f"odd width {image.width} (halves differ in size)"
        if isinstance(image, str):
            yield {"satellite": None, "map": None, "_skip": skipped_as(image, name), **_grid_position(path)}
            continue
        w, h = image.size
        left, right = image.crop((0, 0, w // 2, h)), image.crop((w // 2, 0, w, h))
        satellite, map_ = (left, right) if satellite_side == "left" else (right, left)
        yield {"satellite": encode_rgb(satellite), "map": encode_rgb(map_), "_skip": None, **_grid_position(path)}


def _grid_position(path: str) -> dict:
    match = GRID_NAME.search(Path(path).stem)
    return {"row": int(match[1]), "col": int(match[2])} if match else {}


def _open_rasters(src: Path) -> tuple[Path, Path]:
    """The satellite and map rasters of a two-rasters folder: the files named *sat* and *map*."""
    files = [p for p in sorted(src.iterdir()) if p.is_file() and not p.name.startswith(".")]
    sats = [p for p in files if "sat" in p.stem.lower()]
    maps = [p for p in files if "map" in p.stem.lower() and p not in sats]
    if len(sats) != 1 or len(maps) != 1:
        raise ValueError(f"{src}: a two-rasters folder needs one file named *sat* and one named *map*; "
                         f"found {[p.name for p in files]}")
    return sats[0], maps[0]


def _raster_examples(rows: list[int], satellite: str, map_path: str, tile: int, width: int) -> Iterator[dict]:
    """Tiles of one band of rows at a time, read through `rsgan_hub.geo` (the same band choice and
    16-bit rule as `rsgan translate`): TIFF rasters stream through windowed reads; PNG/JPEG rasters
    are decoded whole once (Pillow cannot read windows; 7424² RGB is 165 MB)."""
    import rasterio

    with contextlib.ExitStack() as stack:
        try:
            scenes = [stack.enter_context(open_scene(p, max_pixels=None)) for p in (satellite, map_path)]
        except ValueError:  # undecodable as a whole (e.g. a truncated PNG): every tile is skipped
            scenes = None
        width -= width % tile  # the raster's width, from its header (known even when it cannot be decoded)
        for row in rows:
            try:  # (tile, width, 3) uint8 strips
                strips = [s.read_rows(row * tile, (row + 1) * tile) for s in scenes] if scenes else None
            except rasterio.errors.RasterioIOError:  # a damaged stretch of a file: skip its tiles only
                strips = None
            for col in range(width // tile):
                reason = None if strips else "unreadable raster data"
                if strips:
                    crops = [np.ascontiguousarray(s[:, col * tile:(col + 1) * tile]) for s in strips]
                    if crops[0].min() == crops[0].max():
                        reason = "blank satellite tile (no data)"
                if reason:
                    yield {"satellite": None, "map": None, "row": row, "col": col,
                           "_skip": skipped_as(reason, f"tile row {row} col {col}")}
                else:
                    yield {"satellite": encode_rgb(Image.fromarray(crops[0])),
                           "map": encode_rgb(Image.fromarray(crops[1])), "row": row, "col": col, "_skip": None}


def _check_coregistered(satellite: Path, map_path: Path) -> tuple[int, int]:
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            with rasterio.open(satellite) as s, rasterio.open(map_path) as m:
                if (s.width, s.height) != (m.width, m.height):
                    raise ValueError(f"{satellite.name} is {s.width}x{s.height} but {map_path.name} is "
                                     f"{m.width}x{m.height}; the rasters must be co-registered")
                if s.crs and m.crs and (s.crs != m.crs or s.transform != m.transform):
                    raise ValueError(f"{satellite.name} and {map_path.name} have different georeferencing")
                return s.width, s.height
        except rasterio.errors.RasterioIOError as err:
            raise ValueError(f"cannot read the rasters: {err}") from None


def build_pair_dataset(src: str | os.PathLike, layout: str = "side-by-side", satellite_side: str = "left",
                       tile: int = 256, test_rows: str | tuple[int, int] | None = None,
                       num_proc: int | None = None, cache_dir: str | None = None):
    """Convert raw pairs -> (DatasetDict, Counter of skipped inputs by reason).

    side-by-side: SRC holds the JPEGs, or train/ val/ test/ folders of them (one split each). Names
    ending `_ROW_COL` (the Mumbai tiles) add `row`/`col` columns and allow `test_rows`.
    two-rasters: SRC holds a *sat* and a *map* raster of the same size, cut into `tile`² tiles;
    tile rows in `test_rows` (A:B) form the test split, a spatial hold-out.
    """
    src = Path(src)
    if not src.is_dir():
        raise ValueError(f"{src}: not a folder")
    if satellite_side not in ("left", "right"):
        raise ValueError(f"satellite_side must be 'left' or 'right', got {satellite_side!r}")
    band = parse_rows(test_rows) if not isinstance(test_rows, tuple) else test_rows
    features = {"satellite": ImageFeature(), "map": ImageFeature()}
    if layout == "side-by-side":
        folders = {p.name: p for p in src.iterdir() if p.is_dir() and p.name in ("train", "val", "validation", "test")}
        if folders and band:
            raise ValueError(f"{src} already has split folders ({', '.join(sorted(folders))}); drop --test-rows")
        folders = folders or {"train": src}
        rows = {split: sorted(str(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
                for split, folder in sorted(folders.items())}
        if not any(rows.values()):
            raise ValueError(f"{src}: no files found")
        gridded = all(GRID_NAME.search(Path(p).stem) for files in rows.values() for p in files)
        if gridded:
            features.update(row=Value("int32"), col=Value("int32"))
        if band:
            if not gridded:
                raise ValueError("--test-rows needs file names ending _ROW_COL (like data_04_13.jpg)")
            test = {p for p in rows["train"] if band[0] <= _grid_position(p)["row"] < band[1]}
            rows = {"train": [p for p in rows["train"] if p not in test], "test": sorted(test)}
        generator, kwargs = _side_by_side_examples, {"splits_root": str(src), "satellite_side": satellite_side}
        key = _listing_key(src, "pairs", satellite_side, band)
        rows = {"files": rows}
    elif layout == "two-rasters":
        if tile < 16:
            raise ValueError(f"--tile must be >= 16, got {tile}")
        satellite, map_path = _open_rasters(src)
        width, height = _check_coregistered(satellite, map_path)
        n_rows = height // tile
        if n_rows == 0 or width < tile:
            raise ValueError(f"the rasters ({width}x{height}) are smaller than one {tile}² tile")
        if band and band[1] > n_rows:
            raise ValueError(f"--test-rows {band[0]}:{band[1]} is outside the {n_rows} tile rows (0:{n_rows})")
        test = set(range(*band)) if band else set()
        rows = {"rows": {"train": [r for r in range(n_rows) if r not in test], "test": sorted(test)}}
        features.update(row=Value("int32"), col=Value("int32"))
        generator, kwargs = _raster_examples, {"satellite": str(satellite), "map_path": str(map_path), "tile": tile,
                                               "width": width}
        key = _listing_key(src, "rasters", tile, band)
    else:
        raise ValueError(f"layout must be 'side-by-side' or 'two-rasters', got {layout!r}")
    (list_name, splits), = rows.items()
    return _generate(generator, {s: v for s, v in splits.items() if v}, features, key, num_proc, cache_dir,
                     list_name=list_name, **kwargs)


# ---------------------------------------------------------------------------------------------------
# The shared conversion step: generator -> Arrow (streamed, sharded over num_proc) -> skipped counts
# ---------------------------------------------------------------------------------------------------

def _listing_key(src, *options) -> str:
    """A cache key that changes when any file under `src` or any option changes."""
    digest = hashlib.sha256(repr((CONVERTER_VERSION, options)).encode())
    for p in sorted(Path(src).rglob("*")):
        if p.is_file():
            stat = p.stat()
            digest.update(f"{p.relative_to(src)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


# An example's `_skip` column: None, or why the file (or tile) was left out and its name; the column is
# dropped once the skips are counted.
SKIP_FEATURE = {"reason": Value("string"), "name": Value("string")}


def skipped_as(reason: str, name: str) -> dict[str, str]:
    """The `_skip` value of a left-out file or tile."""
    return {"reason": reason, "name": name}


def _generate(generator, splits: dict[str, list], features: dict, key: str, num_proc: int | None,
              cache_dir: str | None, list_name: str = "items", skipped: dict | None = None, **kwargs):
    features = Features({**features, "_skip": SKIP_FEATURE})
    out, skipped = DatasetDict(), defaultdict(list, skipped or {})
    for split, items in splits.items():
        # one shard per input (file or tile row); datasets spreads the shards over num_proc workers.
        # Arrow is written every 64 examples, so memory holds at most 64 encoded images per worker.
        procs = num_proc if num_proc and num_proc > 1 and len(items) >= 4 * num_proc else None
        ds = Dataset.from_generator(generator, features=features, cache_dir=cache_dir, num_proc=procs,
                                    gen_kwargs={list_name: items, **kwargs}, split=split, writer_batch_size=64,
                                    fingerprint=f"rsgan-{key}-{split}")
        notes = [n for n in ds["_skip"] if n]
        for note in notes:
            skipped[note["reason"]].append(note["name"])
        if notes:
            ds = ds.filter(lambda notes: [n is None for n in notes], input_columns="_skip", batched=True,
                           batch_size=10_000)
        ds = ds.remove_columns("_skip")
        if len(ds):
            out[split] = ds
    if not out:
        raise ValueError(f"no usable images: {summarize_skipped(skipped)}")
    return out, dict(skipped)


def summarize_skipped(skipped: dict[str, list[str]], examples: int = 3) -> str:
    """'skipped 3: 2 truncated (a.tif, b.tif), 1 not an image (notes.txt)' or 'nothing skipped'."""
    if not skipped:
        return "nothing skipped"
    parts = [f"{len(names)} {reason} ({', '.join(names[:examples])}{', ...' if len(names) > examples else ''})"
             for reason, names in sorted(skipped.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    return f"skipped {sum(len(v) for v in skipped.values())}: " + "; ".join(parts)
