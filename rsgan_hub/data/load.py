"""One loader for every `--dataset`: a Hub dataset id, a folder written by `rsgan dataset`
(`save_to_disk`), a Hub-style folder of parquet files, or a raw folder converted on the fly by the
same code as the command (cached in the HF datasets cache). Column names of other datasets are
arguments, mapped to ours: `image`/`label`/`category` for scenes, `satellite`/`map`/`row`/`col` for pairs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from datasets import ClassLabel, DatasetDict, load_dataset, load_from_disk
from datasets import Image as ImageFeature

from .convert import build_pair_dataset, build_scene_dataset
from ..io import first_line

DATA_FILE_SUFFIXES = {".parquet", ".arrow", ".csv", ".json", ".jsonl"}
HUB_ID = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)?")


def _load_any(spec: str | os.PathLike, convert, cache_dir: str | None) -> DatasetDict:
    path = Path(spec)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():  # save_to_disk
            loaded = load_from_disk(str(path))
            return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
        if any(p.suffix in DATA_FILE_SUFFIXES for folder in (path, path / "data") if folder.is_dir()
               for p in folder.iterdir()):  # a Hub-style folder (a downloaded dataset repo)
            return load_dataset(str(path), cache_dir=cache_dir)
        return convert(path)[0]
    if path.exists():
        raise ValueError(f"{spec}: not a folder")
    if not HUB_ID.fullmatch(str(spec)):  # "./x", "/abs/x", "a/b/c" can only be folders
        raise ValueError(f"{spec}: no such folder")
    try:
        return load_dataset(str(spec), cache_dir=cache_dir)
    except Exception as err:  # offline, missing, private: the library raises many types; report one line
        raise ValueError(f"{spec}: no such folder, and loading it as a Hub dataset failed: "
                         f"{first_line(err, with_type=True)}") from err


def _pick_split(dsdict, split: str | None):
    if split is None:
        return dsdict
    if split not in dsdict:
        raise ValueError(f"no split {split!r}; available: {', '.join(dsdict)}")
    return dsdict[split]


def _standardize(dsdict, rename: dict[str, str], keep: list[str], spec) -> DatasetDict:
    """Rename the source's columns to ours and drop the rest; the image columns must be `datasets.Image`."""
    columns = next(iter(dsdict.values())).column_names
    for source, ours in rename.items():
        if source not in columns:
            raise ValueError(f"{spec}: no column {source!r} (for {ours!r}); columns: {', '.join(columns)}")
    dsdict = dsdict.rename_columns({s: o for s, o in rename.items() if s != o})
    dsdict = dsdict.select_columns([c for c in keep if c in dsdict[next(iter(dsdict))].column_names])
    for name, feature in next(iter(dsdict.values())).features.items():
        if name in ("image", "satellite", "map") and not isinstance(feature, ImageFeature):
            raise ValueError(f"{spec}: column for {name!r} is {type(feature).__name__}, not an Image")
    return dsdict


def load_scene_dataset(spec: str | os.PathLike, split: str | None = "train", image_column: str = "image",
                       label_column: str = "label", cache_dir: str | None = None, num_proc: int | None = None):
    """Scenes from a Hub id, a `rsgan dataset scenes` folder or a raw class tree -> `datasets.Dataset`
    with `image` (Image), `label` (ClassLabel; absent when the source has none) and, for two-level
    trees, `category`. Raw trees are split as the command does by default (10 % test, seed 0).
    `split=None` returns the whole DatasetDict; `cache_dir` defaults to the HF datasets cache."""
    dsdict = _load_any(spec, lambda path: build_scene_dataset(path, num_proc=num_proc, cache_dir=cache_dir),
                       cache_dir)
    columns = next(iter(dsdict.values())).column_names
    rename = {image_column: "image"}
    if label_column in columns:
        rename[label_column] = "label"
    elif label_column != "label":
        raise ValueError(f"{spec}: no column {label_column!r}; columns: {', '.join(columns)}")
    dsdict = _standardize(dsdict, rename, ["image", "label", "category"], spec)
    if "label" in dsdict[next(iter(dsdict))].column_names and \
            not isinstance(dsdict[next(iter(dsdict))].features["label"], ClassLabel):
        dsdict = dsdict.class_encode_column("label")  # strings -> ClassLabel with sorted names
    return _pick_split(dsdict, split)


def load_pair_dataset(spec: str | os.PathLike, split: str | None = "train", satellite_column: str = "satellite",
                      map_column: str = "map", layout: str = "side-by-side", satellite_side: str = "left",
                      tile: int = 256, test_rows: str | None = None, cache_dir: str | None = None,
                      num_proc: int | None = None):
    """Satellite/map pairs from a Hub id, a `rsgan dataset pairs` folder or a raw folder (`layout`,
    `satellite_side`, `tile`, `test_rows` as for the command) -> `datasets.Dataset` with `satellite`
    and `map` (Image), plus `row`/`col` for tiles. Other Hub datasets work through the column
    arguments (e.g. imageA/imageB). A raw folder without split folders or `test_rows` has only "train"."""
    dsdict = _load_any(spec, lambda path: build_pair_dataset(path, layout, satellite_side, tile, test_rows,
                                                              num_proc=num_proc, cache_dir=cache_dir), cache_dir)
    dsdict = _standardize(dsdict, {satellite_column: "satellite", map_column: "map"},
                          ["satellite", "map", "row", "col"], spec)
    return _pick_split(dsdict, split)
